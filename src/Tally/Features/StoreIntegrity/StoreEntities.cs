using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.StoreIntegrity.StoreAccount> StoreAccounts => Set<Features.StoreIntegrity.StoreAccount>();
        public DbSet<Features.StoreIntegrity.StoreOrder> StoreOrders => Set<Features.StoreIntegrity.StoreOrder>();
        public DbSet<Features.StoreIntegrity.StoreAccountRepair> StoreAccountRepairs => Set<Features.StoreIntegrity.StoreAccountRepair>();
    }
}

namespace Tally.Features.StoreIntegrity
{
    /// <summary>
    /// A store account as the store reports it. <see cref="HasOrders"/> is derived data: the store
    /// sets it when an order is placed, and <see cref="RepairHasOrders"/> fixes it where it was missed.
    /// </summary>
    public sealed class StoreAccount
    {
        public Guid Id { get; set; }
        public bool Active { get; set; }
        public bool HasOrders { get; set; }
        public DateTime CreatedAt { get; set; }
    }

    /// <summary>
    /// An order between two store accounts. Only <see cref="StoreOrderStatuses.Active"/> orders count for
    /// the repair. Either account may not be loaded yet: the order counts once it is.
    /// </summary>
    public sealed class StoreOrder
    {
        public Guid Id { get; set; }
        public Guid SellerAccount { get; set; }
        public Guid BuyerAccount { get; set; }
        public required string Status { get; set; }

        /// <summary>The type the repair matches: the order's <c>productType</c>, or the seed's <c>metadata.product_type</c>.</summary>
        public required string ProductType { get; set; }

        /// <summary>The store's metadata object as compact JSON text, or null.</summary>
        public string? Metadata { get; set; }

        public DateTime CreatedAt { get; set; }
    }

    /// <summary>One account a run of <see cref="RepairHasOrders"/> set <c>has_orders</c> on, kept under the run's <c>cron_runs</c> id.</summary>
    public sealed class StoreAccountRepair
    {
        public long RunId { get; set; }
        public Guid AccountId { get; set; }
        public DateTime RepairedAt { get; set; }
    }

    public static class StoreOrderStatuses
    {
        /// <summary>The one status that counts, compared exactly (as the store writes it). Also the partial indexes' predicate.</summary>
        public const string Active = "active";
    }

    internal sealed class StoreAccountMap : IEntityTypeConfiguration<StoreAccount>
    {
        public void Configure(EntityTypeBuilder<StoreAccount> e) => e.ToTable("store_accounts");
    }

    // No relationship to StoreAccount: an order may arrive before its accounts (0008_store_repairs.sql).
    internal sealed class StoreOrderMap : IEntityTypeConfiguration<StoreOrder>
    {
        public void Configure(EntityTypeBuilder<StoreOrder> e) => e.ToTable("store_orders");
    }

    internal sealed class StoreAccountRepairMap : IEntityTypeConfiguration<StoreAccountRepair>
    {
        public void Configure(EntityTypeBuilder<StoreAccountRepair> e)
        {
            e.ToTable("store_account_repairs");
            e.HasKey(r => new { r.RunId, r.AccountId });
        }
    }
}
