"""Market pages: ``browse`` lists markets and the panels shown beside the news; ``trading`` is the market page, its ticket and the portfolio."""
