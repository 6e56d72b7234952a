using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Features.Users;

namespace Tally.Hosting;

/// <summary>
/// Embedded-mode demo data (<c>Tally:DemoData=true</c>): a guardian with a funded account and a
/// linked junior, with fixed ids so the README's examples work. Inserted once; a restart leaves it be.
/// </summary>
public static partial class DemoData
{
    public static readonly Guid GuardianId = Guid.Parse("11111111-1111-1111-1111-111111111111");
    public static readonly Guid JuniorId = Guid.Parse("22222222-2222-2222-2222-222222222222");
    public static readonly Guid GuardianAccountId = Guid.Parse("11111111-0000-0000-0000-000000000001");
    public static readonly Guid JuniorAccountId = Guid.Parse("22222222-0000-0000-0000-000000000001");

    public static WebApplicationBuilder AddDemoData(this WebApplicationBuilder builder)
    {
        if (builder.Configuration.GetValue("Tally:DemoData", false))
        {
            builder.Services.AddHostedService<Seeder>();
        }
        return builder;
    }

    private sealed partial class Seeder(IDbContextFactory<TallyDb> dbs, TimeProvider clock, ILogger<Seeder> logger) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            await using var db = await dbs.CreateDbContextAsync(cancellationToken);
            if (await db.Users.AnyAsync(u => u.Id == GuardianId, cancellationToken))
            {
                return;
            }
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

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(Level = LogLevel.Information, Message = "Demo data loaded: a guardian with 500.00 USD and a linked junior")]
        private static partial void LogSeeded(ILogger logger);
    }
}
