using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.BalanceSync.CoreAccount> CoreAccounts => Set<Features.BalanceSync.CoreAccount>();
    }
}

namespace Tally.Features.BalanceSync
{
    /// <summary>
    /// A user's account at the core bank, and the mirror of its balances. <see cref="Balance"/> and
    /// <see cref="AvailableBalance"/> are null until the first successful sync.
    /// </summary>
    public sealed class CoreAccount
    {
        public Guid Id { get; set; }
        public Guid UserId { get; set; }
        public required string AccountNumber { get; set; }
        public required string AccountType { get; set; }
        public bool IsPrimary { get; set; }
        public bool IsActive { get; set; }
        public required string Currency { get; set; }
        public decimal? Balance { get; set; }
        public decimal? AvailableBalance { get; set; }

        /// <summary>When Tally last stored a balance from the core.</summary>
        public DateTime? LastSyncedAt { get; set; }

        /// <summary>When Tally last asked the core, whatever the answer.</summary>
        public DateTime? LastAttemptAt { get; set; }

        /// <summary>The bank's own as-of time for the stored balance.</summary>
        public DateTime? BankAsOf { get; set; }

        /// <summary>Why the last attempt failed; null after a success.</summary>
        public string? LastError { get; set; }

        public DateTime CreatedAt { get; set; }
        public DateTime UpdatedAt { get; set; }
    }

    internal sealed class CoreAccountMap : IEntityTypeConfiguration<CoreAccount>
    {
        public void Configure(EntityTypeBuilder<CoreAccount> e)
        {
            e.ToTable("core_accounts");
            e.HasOne<Users.User>().WithMany().HasForeignKey(a => a.UserId);
            e.Property(a => a.Balance).HasPrecision(19, 4);
            e.Property(a => a.AvailableBalance).HasPrecision(19, 4);
        }
    }

    public static class CoreAccountQueries
    {
        public static IQueryable<CoreAccount> OfUser(this IQueryable<CoreAccount> accounts, Guid userId) =>
            accounts.Where(a => a.UserId == userId);

        /// <summary>The user's accounts in answer order: primary first, then by account number.</summary>
        public static IQueryable<CoreAccount> InAnswerOrder(this IQueryable<CoreAccount> accounts) =>
            accounts.OrderByDescending(a => a.IsPrimary).ThenBy(a => a.AccountNumber);
    }
}
