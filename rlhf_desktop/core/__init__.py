"""Plain building blocks shared by every layer (stdlib only, imports nothing of ours)."""
