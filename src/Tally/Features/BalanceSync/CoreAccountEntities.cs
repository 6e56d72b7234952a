using System.Data.Common;
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
    /// A user's account at the core bank, and the mirror of its balances. <see cref="AvailableBalance"/>
    /// is what the user is shown as their <c>balance</c> (seed 001 reads the core's available balance);
    /// <see cref="WorkingBalance"/> includes amounts the bank has locked. Both are null until the first successful sync.
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
        public decimal? WorkingBalance { get; set; }
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
            e.Property(a => a.WorkingBalance).HasPrecision(19, 4);
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

    /// <summary>
    /// Core accounts read by hand-written SQL (alias <c>a</c>), for statements that read them in the same
    /// round trip as something else. Same columns and values as the EF Core mapping.
    /// </summary>
    internal static class CoreAccountRows
    {
        public const string Columns = "a.id, a.user_id, a.account_number, a.account_type, a.is_primary, a.is_active, a.currency, a.working_balance, "
            + "a.available_balance, a.last_synced_at, a.last_attempt_at, a.bank_as_of, a.last_error, a.created_at, a.updated_at";

        /// <summary>The accounts of the current row and every row after it, from column <paramref name="first"/> on; a row without an account (an outer join's) adds none.</summary>
        public static async Task<List<CoreAccount>> ReadAllAsync(DbDataReader reader, int first, CancellationToken ct)
        {
            var accounts = new List<CoreAccount>();
            do
            {
                if (!reader.IsDBNull(first))
                {
                    accounts.Add(Read(reader, first));
                }
            }
            while (await reader.ReadAsync(ct));
            return accounts;
        }

        private static CoreAccount Read(DbDataReader r, int i) => new()
        {
            Id = r.GetGuid(i),
            UserId = r.GetGuid(i + 1),
            AccountNumber = r.GetString(i + 2),
            AccountType = r.GetString(i + 3),
            IsPrimary = r.GetBoolean(i + 4),
            IsActive = r.GetBoolean(i + 5),
            Currency = r.GetString(i + 6),
            WorkingBalance = r.IsDBNull(i + 7) ? null : r.GetDecimal(i + 7),
            AvailableBalance = r.IsDBNull(i + 8) ? null : r.GetDecimal(i + 8),
            LastSyncedAt = r.IsDBNull(i + 9) ? null : r.GetFieldValue<DateTime>(i + 9),
            LastAttemptAt = r.IsDBNull(i + 10) ? null : r.GetFieldValue<DateTime>(i + 10),
            BankAsOf = r.IsDBNull(i + 11) ? null : r.GetFieldValue<DateTime>(i + 11),
            LastError = r.IsDBNull(i + 12) ? null : r.GetString(i + 12),
            CreatedAt = r.GetFieldValue<DateTime>(i + 13),
            UpdatedAt = r.GetFieldValue<DateTime>(i + 14),
        };
    }
}
