"""The order API: queries and exports over orders (pure), and the HTTP views every worker serves."""
