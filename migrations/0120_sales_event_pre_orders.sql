-- Units already sold for an upcoming sales event, per SKU, as a JSON object
-- ({"tee-black-m": 12}): the event's plan never recommends less.
ALTER TABLE sales_events ADD COLUMN pre_orders TEXT NOT NULL DEFAULT '{}';
