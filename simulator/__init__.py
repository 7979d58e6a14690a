"""The exchange simulator: venues' real protocols on 127.0.0.1, for tests and offline runs."""
