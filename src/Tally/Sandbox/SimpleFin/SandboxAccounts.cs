using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Tally.Sandbox.SimpleFin;

/// <summary>One fake bank account at an instant.</summary>
public sealed record SandboxAccount(
    string Id, string Name, string Kind, string MaskedNumber, decimal Balance, decimal? AvailableBalance, string Currency, DateTime BalanceDate);

/// <summary>
/// Deterministic fake accounts: the same seed always gives the same accounts, and their balances
/// move once per drift period (and stay put within one), so a second sync in the same period finds
/// nothing changed while a later one does. Served by the SimpleFIN sandbox, to SimpleFIN clients and
/// (at <c>POST /sandbox/simplefin/generated-accounts</c>) to the <c>sandbox</c> connection provider.
/// </summary>
public static class SandboxAccounts
{
    private static readonly string[] Kinds = ["Checking", "Savings", "Credit Card", "Auto Loan", "Brokerage"];

    public static IEnumerable<SandboxAccount> For(string seed, int count, DateTime now, TimeSpan driftPeriod)
    {
        var period = Math.Max(1, driftPeriod.Ticks);
        var bucket = now.Ticks / period;
        var asOf = new DateTime(bucket * period, DateTimeKind.Utc);
        for (var i = 0; i < count; i++)
        {
            var h = Hash($"{seed}|{i}");
            var kind = Kinds[i % Kinds.Length];
            var principal = (long)(h % 5_000_000UL) / 100m;
            var drift = ((long)(Hash($"{seed}|{i}|{bucket}") % 20_001UL) - 10_000) / 100m;
            var owed = kind is "Credit Card" or "Auto Loan";
            var balance = owed ? -principal + drift : principal + drift;
            decimal? available = kind switch
            {
                "Checking" => balance - (long)((h >> 24) % 20_000UL) / 100m,
                "Credit Card" => 10_000m + balance,
                _ => null,
            };
            yield return new SandboxAccount(
                $"ACT-{h:x16}",
                $"Sandbox {kind} {i + 1}",
                kind,
                $"****{h % 10_000:D4}",
                balance,
                available,
                i % 7 == 6 ? "EUR" : "USD",
                asOf);
        }
    }

    public static string Amount(decimal value) => value.ToString("0.00", CultureInfo.InvariantCulture);

    private static ulong Hash(string text) => BinaryPrimitives.ReadUInt64BigEndian(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
