-- Who holds a claim on an outbox row: a token of the drain run that claimed it, cleared
-- when the outcome is recorded. Only one drain of a store's rows of a kind runs at a time
-- (the job's lease), so a claim left by an earlier run belongs to a run that died (a
-- killed daemon) and the next run takes the row at once instead of waiting for the claim
-- to lapse.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
