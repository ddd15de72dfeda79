"""Model backends behind one small interface; a provider never touches the store."""
