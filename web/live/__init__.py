"""Server-sent events: each volunteer's and organizer's live view of calls."""
