-- Console sign-in: a one-time code (a short-lived signed link, see Dashboard/SignIn.cs) is spent by
-- inserting its nonce here; the primary key makes a second use fail on every instance at once.
CREATE TABLE signin_codes_used (
    nonce   TEXT PRIMARY KEY,
    used_at TEXT NOT NULL
);
