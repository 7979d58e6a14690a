"""Producers: venue connections and feed handlers (see issue 4)."""
