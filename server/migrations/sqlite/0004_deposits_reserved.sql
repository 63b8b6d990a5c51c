-- The server looks up RESERVED deposits whose user is watching, to learn when
-- the transfer was confirmed (Pientegra sends no event for it).
CREATE INDEX deposits_reserved ON deposits (created_at) WHERE status = 'RESERVED';
