"""What runs in the background: the engine, the callback outbox, the poller."""
