"""The lifecycle core over a store of orders (pure): the order book, its deadline index, and replays."""
