"""Reading GitHub job logs: pure parsing, no I/O (the excerpt of a failed step, its search,
sections and marks)."""
