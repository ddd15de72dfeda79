"""`kind = "cog"`: models served by cog servers (Replicate's packaging), pooled behind the gateway."""
