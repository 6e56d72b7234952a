-- Balance sync: the user's `balance` is the core's available balance, as in seed 001; the working
-- balance keeps its own name, so no reader mistakes one for the other.
ALTER TABLE core_accounts RENAME COLUMN balance TO working_balance;
