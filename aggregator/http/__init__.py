"""HTTP: fetch a feed safely and politely, discover a page's feed, WebSub, full-text pages."""
