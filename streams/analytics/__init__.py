"""Analytics (pure): facts from the order book's steps, and event-time windows over them."""
