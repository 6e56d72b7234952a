using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Features.Ledger;

public sealed record CreateAccount(Guid? Id, Guid? OwnerId, string? Currency);

public sealed record CreateDeposit(Guid? AccountId, decimal? Amount, string? IdempotencyKey);

public sealed record AccountView(Guid Id, Guid? OwnerId, string Currency, string Kind, decimal Balance)
{
    public static AccountView Of(LedgerAccount a) => new(a.Id, a.OwnerId, a.Currency, a.Kind, a.Balance.Amount);
}

public sealed record TransferView(Guid Id, Guid DebitAccountId, Guid CreditAccountId, decimal Amount, string Currency, string Kind, string IdempotencyKey, DateTime CreatedAt)
{
    public static TransferView Of(LedgerTransfer t) =>
        new(t.Id, t.DebitAccountId, t.CreditAccountId, t.Amount.Amount, t.Currency, t.Kind, t.IdempotencyKey, t.CreatedAt);
}

public sealed record CurrencyTotal(string Currency, decimal Total, int Accounts);

public static class LedgerEndpoints
{
    public const string DepositKind = "DEPOSIT";

    public static WebApplication MapLedger(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin/ledger", "Admin: ledger");
        admin.MapPost("/accounts", CreateAccountAsync).ForAdmins()
            .WithSummary("Open a user's ledger account in one currency (repeatable with the same id)")
            .Refuses(404, "USER.NOT_FOUND", "the owner does not exist")
            .Refuses(409, "LEDGER.ACCOUNT_EXISTS", "the owner already has an account in this currency, or the id is taken");
        admin.MapGet("/accounts/{id:guid}", GetAccountAsync)
            .WithSummary("Read a ledger account and its balance")
            .Refuses(404, "LEDGER.ACCOUNT_NOT_FOUND", "no account has this id");
        admin.MapPost("/deposits", DepositAsync).ForAdmins()
            .WithSummary("Deposit funds into a user's account from the currency's funding account, once per idempotency key")
            .Refuses(404, "LEDGER.ACCOUNT_NOT_FOUND", "no user account has this id")
            .Refuses(409, "LEDGER.BALANCE_LIMIT", "the deposit would take the account past the ledger's ceiling")
            .Refuses(409, "LEDGER.IDEMPOTENCY_KEY_REUSED", "this idempotency key was used for a different deposit");
        admin.MapGet("/transfers/{id:guid}", GetTransferAsync)
            .WithSummary("Read one ledger transfer (a deposit or an allowance payment)")
            .Refuses(404, "LEDGER.TRANSFER_NOT_FOUND", "no transfer has this id");
        admin.MapGet("/totals", TotalsAsync)
            .WithSummary("The sum of every balance per currency: zero when the books balance");

        var me = app.MapGroup("/api/me/ledger").WithTags("Me: ledger").RequireAuthorization(Roles.User);
        me.MapGet("/accounts", MyAccountsAsync).WithSummary("The caller's ledger accounts and balances");
        me.MapGet("/transfers", MyTransfersAsync).WithSummary("The caller's transfers, newest first");
        return app;
    }

    internal static async Task<Results<Created<AccountView>, Ok<AccountView>, ValidationProblem, ProblemHttpResult>> CreateAccountAsync(
        CreateAccount body, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var errors = new FieldErrors()
            .Check(body.OwnerId is not null && body.OwnerId != Guid.Empty, "ownerId", "is required")
            .Check(Currencies.IsKnown(body.Currency), "currency", "must be a supported ISO 4217 code such as USD")
            .Check(body.Id != Guid.Empty, "id", "must not be the empty uuid");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (!await db.Users.AnyAsync(u => u.Id == body.OwnerId, ct))
        {
            return Problems.NotFound("USER.NOT_FOUND", "The owner does not exist.");
        }
        var id = body.Id ?? Guid.CreateVersion7();
        var imported = await Imports.CreateOrMatchAsync(db,
            clashes: a => a.Id == id || (a.OwnerId == body.OwnerId && a.Currency == body.Currency),
            same: a => a.Id == id && a.OwnerId == body.OwnerId && a.Currency == body.Currency,
            create: () => new LedgerAccount
            {
                Id = id,
                OwnerId = body.OwnerId,
                Currency = body.Currency!,
                Kind = AccountKinds.User,
                CreatedAt = clock.GetUtcNow().UtcDateTime,
            },
            ct);
        return imported switch
        {
            Imported<LedgerAccount>.Created(var account) => TypedResults.Created($"/api/admin/ledger/accounts/{id}", AccountView.Of(account)),
            Imported<LedgerAccount>.Matched(var account) => TypedResults.Ok(AccountView.Of(account)),
            _ => Problems.Conflict("LEDGER.ACCOUNT_EXISTS", "The owner already has an account in this currency."),
        };
    }

    internal static async Task<Results<Ok<AccountView>, ProblemHttpResult>> GetAccountAsync(Guid id, TallyDb db, CancellationToken ct)
    {
        var account = await db.LedgerAccounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == id, ct);
        return account is null ? Problems.NotFound("LEDGER.ACCOUNT_NOT_FOUND", "No such account.") : TypedResults.Ok(AccountView.Of(account));
    }

    internal static async Task<Results<Created<TransferView>, Ok<TransferView>, ValidationProblem, ProblemHttpResult>> DepositAsync(
        CreateDeposit body, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var errors = new FieldErrors()
            .Check(body.AccountId is not null, "accountId", "is required")
            .Check(body.Amount > 0, "amount", "must be positive")
            .CheckText(body.IdempotencyKey, "idempotencyKey", maxLength: 200);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var account = await db.LedgerAccounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == body.AccountId, ct);
        if (account is null || account.Kind != AccountKinds.User)
        {
            return Problems.NotFound("LEDGER.ACCOUNT_NOT_FOUND", "No such user account.");
        }
        var amount = Currencies.CheckAmount(body.Amount!.Value, account.Currency);
        if (amount.Minor is not { } minor)
        {
            return Problems.Invalid("amount", amount.Error!);
        }

        var key = $"deposit:{body.IdempotencyKey}";
        var now = clock.GetUtcNow().UtcDateTime;
        await Ledger.EnsureFundingAccountAsync(db, account.Currency, now, ct);
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            var result = await Ledger.TransferAsync(db,
                new TransferRequest(Ledger.FundingAccountId(account.Currency), account.Id, minor, account.Currency, DepositKind, key), now, ct);
            if (result is TransferResult.Transferred done)
            {
                await tx.CommitAsync(ct);
                var transfer = await db.LedgerTransfers.AsNoTracking().FirstAsync(t => t.Id == done.TransferId, ct);
                return TypedResults.Created(TransferLocation(transfer.Id), TransferView.Of(transfer));
            }
            await tx.RollbackAsync(ct);
            if (result is TransferResult.BalanceLimitExceeded)
            {
                return Problems.Conflict("LEDGER.BALANCE_LIMIT",
                    $"The deposit would take a balance past the ledger's ceiling of {Currencies.MaxAmount(account.Currency)} {account.Currency} per account.");
            }
        }

        // The key was used before: the same deposit repeated is answered with the original transfer.
        var earlier = await db.LedgerTransfers.AsNoTracking().FirstAsync(t => t.IdempotencyKey == key, ct);
        return earlier.CreditAccountId == account.Id && earlier.AmountMinor == minor
            ? TypedResults.Ok(TransferView.Of(earlier))
            : Problems.Conflict("LEDGER.IDEMPOTENCY_KEY_REUSED", "This idempotency key was used for a different deposit.");
    }

    /// <summary>Where a deposit's 201 points: <see cref="GetTransferAsync"/>.</summary>
    internal static string TransferLocation(Guid id) => $"/api/admin/ledger/transfers/{id}";

    internal static async Task<Results<Ok<TransferView>, ProblemHttpResult>> GetTransferAsync(Guid id, TallyDb db, CancellationToken ct)
    {
        var transfer = await db.LedgerTransfers.AsNoTracking().FirstOrDefaultAsync(t => t.Id == id, ct);
        return transfer is null ? Problems.NotFound("LEDGER.TRANSFER_NOT_FOUND", "No such transfer.") : TypedResults.Ok(TransferView.Of(transfer));
    }

    internal static async Task<Ok<List<CurrencyTotal>>> TotalsAsync(TallyDb db, CancellationToken ct)
    {
        var rows = await db.LedgerAccounts.AsNoTracking()
            .GroupBy(a => a.Currency)
            .Select(g => new { Currency = g.Key, Total = g.Sum(a => a.BalanceMinor), Accounts = g.Count() })
            .ToListAsync(ct);
        return TypedResults.Ok(rows.OrderBy(r => r.Currency, StringComparer.Ordinal)
            .Select(r => new CurrencyTotal(r.Currency, Currencies.FromMinor(r.Total, r.Currency), r.Accounts)).ToList());
    }

    internal static async Task<Ok<List<AccountView>>> MyAccountsAsync(HttpContext http, TallyDb db, CancellationToken ct)
    {
        var accounts = await db.LedgerAccounts.AsNoTracking().OwnedBy(http.User.UserId()).OrderBy(a => a.Currency).ToListAsync(ct);
        return TypedResults.Ok(accounts.Select(AccountView.Of).ToList());
    }

    internal static async Task<Results<Ok<List<TransferView>>, ValidationProblem>> MyTransfersAsync(
        HttpContext http, TallyDb db, CancellationToken ct, int? limit = null)
    {
        if (new FieldErrors().CheckLimit(limit, 50, 500, out var take) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var mine = await db.LedgerAccounts.AsNoTracking().OwnedBy(http.User.UserId()).Select(a => a.Id).ToListAsync(ct);
        var transfers = await db.LedgerTransfers.AsNoTracking().Touching(mine)
            .OrderByDescending(t => t.CreatedAt).ThenByDescending(t => t.Id).Take(take).ToListAsync(ct);
        return TypedResults.Ok(transfers.Select(TransferView.Of).ToList());
    }
}
