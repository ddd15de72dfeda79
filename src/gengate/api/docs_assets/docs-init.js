// Starts Swagger UI on /openapi.json; a file of its own, since /docs allows no inline script.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui", validatorUrl: null });
});
