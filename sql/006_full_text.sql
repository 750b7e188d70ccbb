-- Full text for summary-only feeds: opt in per feed (`aggregator feeds add URL --full-text`).
-- The article page is fetched and its main text extracted; that text is what is hashed,
-- clustered and stored.
ALTER TABLE feeds ADD COLUMN full_text boolean NOT NULL DEFAULT false;
