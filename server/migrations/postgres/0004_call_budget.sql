-- The one budget of calls to Pientegra that every instance on this database
-- shares (server/src/pientegra/budget.rs): the GCRA's theoretical arrival
-- time, in microseconds of the database's clock.
CREATE TABLE pientegra_call_budget (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    tat_us BIGINT  NOT NULL
);
INSERT INTO pientegra_call_budget (id, tat_us) VALUES (1, 0);
