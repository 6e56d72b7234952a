-- Ledger ceilings (Currencies.MaxMinor, Currencies.MaxIssuedMinor): an account holds at most 10^15
-- minor units, a funding account issues at most 10^18, a transfer moves at most 10^15. The ledger's
-- updates refuse more on their own; these constraints refuse it whatever writes the row, and keep
-- every currency's sum of balances inside bigint.
ALTER TABLE ledger_accounts ADD CONSTRAINT ck_ledger_accounts_balance_range
    CHECK (balance_minor BETWEEN -1000000000000000000 AND 1000000000000000);
ALTER TABLE ledger_transfers ADD CONSTRAINT ck_ledger_transfers_amount_max
    CHECK (amount_minor <= 1000000000000000);
