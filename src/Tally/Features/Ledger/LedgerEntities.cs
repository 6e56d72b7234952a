using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.Ledger.LedgerAccount> LedgerAccounts => Set<Features.Ledger.LedgerAccount>();
        public DbSet<Features.Ledger.LedgerTransfer> LedgerTransfers => Set<Features.Ledger.LedgerTransfer>();
    }
}

namespace Tally.Features.Ledger
{
    public static class AccountKinds
    {
        public const string User = "USER";
        public const string Funding = "FUNDING";
    }

    public sealed class LedgerAccount
    {
        public Guid Id { get; set; }
        public Guid? OwnerId { get; set; }
        public required string Currency { get; set; }
        public required string Kind { get; set; }
        public long BalanceMinor { get; set; }
        public DateTime CreatedAt { get; set; }

        public Money Balance => Money.FromMinor(BalanceMinor, Currency);
    }

    /// <summary>An immutable movement of money between two accounts (the database refuses updates and deletes).</summary>
    public sealed class LedgerTransfer
    {
        public Guid Id { get; set; }
        public Guid DebitAccountId { get; set; }
        public Guid CreditAccountId { get; set; }
        public long AmountMinor { get; set; }
        public required string Currency { get; set; }
        public required string Kind { get; set; }
        public required string IdempotencyKey { get; set; }
        public DateTime CreatedAt { get; set; }

        public Money Amount => Money.FromMinor(AmountMinor, Currency);
    }

    internal sealed class LedgerAccountMap : IEntityTypeConfiguration<LedgerAccount>
    {
        public void Configure(EntityTypeBuilder<LedgerAccount> e)
        {
            e.ToTable("ledger_accounts");
            e.Ignore(a => a.Balance);
            e.HasOne<Users.User>().WithMany().HasForeignKey(a => a.OwnerId);
        }
    }

    internal sealed class LedgerTransferMap : IEntityTypeConfiguration<LedgerTransfer>
    {
        public void Configure(EntityTypeBuilder<LedgerTransfer> e)
        {
            e.ToTable("ledger_transfers");
            e.Ignore(t => t.Amount);
            e.HasOne<LedgerAccount>().WithMany().HasForeignKey(t => t.DebitAccountId).OnDelete(DeleteBehavior.Restrict);
            e.HasOne<LedgerAccount>().WithMany().HasForeignKey(t => t.CreditAccountId).OnDelete(DeleteBehavior.Restrict);
        }
    }
}
