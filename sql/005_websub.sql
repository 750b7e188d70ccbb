-- WebSub (push) subscriptions: one per feed whose document names a hub.

ALTER TABLE feeds
    ADD COLUMN websub_hub          text CHECK (length(websub_hub) <= 2048),
    ADD COLUMN websub_topic        text CHECK (length(websub_topic) <= 2048),
    -- HMAC key the hub signs pushes with; random per subscription.
    ADD COLUMN websub_secret       text,
    -- requested: asked the hub, awaiting its verification; active: verified.
    ADD COLUMN websub_state        text CHECK (websub_state IN ('requested', 'active', 'denied')),
    ADD COLUMN websub_requested_at timestamptz,
    ADD COLUMN websub_expires_at   timestamptz;
