-- Ledger ceilings, as in the PostgreSQL script. SQLite cannot add a CHECK to an existing table, so
-- triggers refuse the rows instead. typeof() catches what SQLite does on an integer overflow:
-- it silently stores the sum as a floating-point number.
CREATE TRIGGER ledger_accounts_balance_range_insert BEFORE INSERT ON ledger_accounts
WHEN typeof(NEW.balance_minor) <> 'integer' OR NEW.balance_minor > 1000000000000000 OR NEW.balance_minor < -1000000000000000000
BEGIN
    SELECT RAISE(ABORT, 'ledger balance out of range');
END;
CREATE TRIGGER ledger_accounts_balance_range_update BEFORE UPDATE OF balance_minor ON ledger_accounts
WHEN typeof(NEW.balance_minor) <> 'integer' OR NEW.balance_minor > 1000000000000000 OR NEW.balance_minor < -1000000000000000000
BEGIN
    SELECT RAISE(ABORT, 'ledger balance out of range');
END;
CREATE TRIGGER ledger_transfers_amount_max BEFORE INSERT ON ledger_transfers
WHEN typeof(NEW.amount_minor) <> 'integer' OR NEW.amount_minor > 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'ledger transfer amount out of range');
END;
