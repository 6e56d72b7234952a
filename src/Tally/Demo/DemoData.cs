using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Features.Ledger;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs.Lanes;

namespace Tally.Demo;

/// <summary>
/// Embedded-mode demo data (<c>Tally:DemoData=true</c>): a guardian with a funded account and a
/// linked junior, and core-bank accounts for the guardian and a second mobile-banking user, with
/// fixed ids so the README's examples work. Inserted once; a restart leaves it be.
/// </summary>
public static partial class DemoData
{
    public static readonly Guid GuardianId = Guid.Parse("11111111-1111-1111-1111-111111111111");
    public static readonly Guid JuniorId = Guid.Parse("22222222-2222-2222-2222-222222222222");
    public static readonly Guid GuardianAccountId = Guid.Parse("11111111-0000-0000-0000-000000000001");
    public static readonly Guid JuniorAccountId = Guid.Parse("22222222-0000-0000-0000-000000000001");
    public static readonly Guid MobileUserId = Guid.Parse("33333333-3333-3333-3333-333333333333");

    public static WebApplicationBuilder AddDemoData(this WebApplicationBuilder builder)
    {
        if (builder.Configuration.GetValue("Tally:DemoData", false))
        {
            builder.Services.AddHostedService<Seeder>();
        }
        return builder;
    }

    private sealed partial class Seeder(
        IDbContextFactory<TallyDb> dbs, ILaneStore lanes, StorageSettings storage, TimeProvider clock, ILogger<Seeder> logger) : IHostedService
    {
        /// <summary>PostgreSQL advisory lock key under which instances starting together load the demo data one after another.</summary>
        private const long LoadLockKey = 0x7461_6c6c_7901;

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            // Instances started at the same instant on PostgreSQL take turns (an advisory lock), so the
            // second finds the data there. The users' primary keys stay the guarantee: should two ever
            // both load, one's unique violation means "already loaded".
            await using var turn = await TakeTurnAsync(cancellationToken);
            await using (var db = await dbs.CreateDbContextAsync(cancellationToken))
            {
                if (!await db.Users.AnyAsync(u => u.Id == GuardianId, cancellationToken))
                {
                    await LoadOnceAsync(() => SeedFamilyAsync(db, cancellationToken));
                }
            }
            await using (var db = await dbs.CreateDbContextAsync(cancellationToken))
            {
                if (!await db.Users.AnyAsync(u => u.Id == MobileUserId, cancellationToken))
                {
                    await LoadOnceAsync(() => SeedCoreBankingAsync(db, cancellationToken));
                }
            }
        }

        private async Task<IAsyncDisposable?> TakeTurnAsync(CancellationToken ct)
        {
            if (storage.Provider != StorageProvider.Postgres)
            {
                return null;
            }
            var connection = new Npgsql.NpgsqlConnection(storage.ConnectionString);
            await connection.OpenAsync(ct);
            await using (var take = new Npgsql.NpgsqlCommand($"SELECT pg_advisory_lock({LoadLockKey})", connection))
            {
                await take.ExecuteNonQueryAsync(ct);
            }
            return new Turn(connection);
        }

        /// <summary>The lock, given back explicitly: a pooled connection keeps its session (and so the lock) when closed.</summary>
        private sealed class Turn(Npgsql.NpgsqlConnection connection) : IAsyncDisposable
        {
            public async ValueTask DisposeAsync()
            {
                await using (var give = new Npgsql.NpgsqlCommand($"SELECT pg_advisory_unlock({LoadLockKey})", connection))
                {
                    await give.ExecuteNonQueryAsync();
                }
                await connection.DisposeAsync();
            }
        }

        private async Task LoadOnceAsync(Func<Task> load)
        {
            try
            {
                await load();
            }
            catch (DbUpdateException e) when (DbErrors.IsUniqueViolation(e))
            {
                LogLoadedElsewhere(logger);
            }
        }

        private async Task SeedFamilyAsync(TallyDb db, CancellationToken cancellationToken)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            db.Users.AddRange(
                new User { Id = GuardianId, Username = "demo-guardian", Context = UserContexts.MobileBanking, CustomerNumber = "100001", IsActive = true, CreatedAt = now },
                new User { Id = JuniorId, Username = "demo-junior", Context = UserContexts.Wallet, IsActive = true, CreatedAt = now });
            db.GuardianJuniors.Add(new GuardianJunior { GuardianId = GuardianId, JuniorId = JuniorId, LinkedAt = now });
            db.LedgerAccounts.AddRange(
                new LedgerAccount { Id = GuardianAccountId, OwnerId = GuardianId, Currency = "USD", Kind = AccountKinds.User, CreatedAt = now },
                new LedgerAccount { Id = JuniorAccountId, OwnerId = JuniorId, Currency = "USD", Kind = AccountKinds.User, CreatedAt = now });
            await db.SaveChangesAsync(cancellationToken);

            await Ledger.EnsureFundingAccountAsync(db, "USD", now, cancellationToken);
            await using var tx = await db.Database.BeginTransactionAsync(cancellationToken);
            await Ledger.TransferAsync(db, new TransferRequest(Ledger.FundingAccountId("USD"), GuardianAccountId, 500_00, "USD",
                LedgerEndpoints.DepositKind, "deposit:demo-guardian-initial"), now, cancellationToken);
            await tx.CommitAsync(cancellationToken);
            LogSeeded(logger);
        }

        /// <summary>Two mobile-banking users with accounts at the (sandbox) core, queued for a first sync at once.</summary>
        private async Task SeedCoreBankingAsync(TallyDb db, CancellationToken cancellationToken)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            db.Users.Add(new User { Id = MobileUserId, Username = "demo-mobile", Context = UserContexts.MobileBanking, CustomerNumber = "100002", IsActive = true, CreatedAt = now });
            CoreAccount Account(string id, Guid userId, string number, string type, bool primary, string currency) => new()
            {
                Id = Guid.Parse(id),
                UserId = userId,
                AccountNumber = number,
                AccountType = type,
                IsPrimary = primary,
                IsActive = true,
                Currency = currency,
                CreatedAt = now,
                UpdatedAt = now,
            };
            db.CoreAccounts.AddRange(
                Account("11111111-0000-0000-0000-00000000c001", GuardianId, "100001-001", "SAVINGS", true, "USD"),
                Account("11111111-0000-0000-0000-00000000c002", GuardianId, "100001-002", "CURRENT", false, "USD"),
                Account("33333333-0000-0000-0000-00000000c001", MobileUserId, "100002-001", "CURRENT", true, "USD"),
                Account("33333333-0000-0000-0000-00000000c002", MobileUserId, "100002-002-EUR", "SAVINGS", false, "EUR"));
            await db.SaveChangesAsync(cancellationToken);
            await lanes.EnqueueBackgroundAsync([GuardianId, MobileUserId], cancellationToken);
            LogCoreBankingSeeded(logger);
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(Level = LogLevel.Information, Message = "Demo data was loaded by another instance starting at the same time")]
        private static partial void LogLoadedElsewhere(ILogger logger);

        [LoggerMessage(Level = LogLevel.Information, Message = "Demo data loaded: a guardian with 500.00 USD and a linked junior")]
        private static partial void LogSeeded(ILogger logger);

        [LoggerMessage(Level = LogLevel.Information, Message = "Demo data loaded: two mobile-banking users with core accounts, queued for a first balance sync")]
        private static partial void LogCoreBankingSeeded(ILogger logger);
    }
}
