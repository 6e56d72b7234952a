using System.Globalization;
using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Ledger;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>
/// The ledger's invariants after a fuzz, as problems (not assertions, so they are reported with
/// everything else): totals are 0 per currency (through the API), every balance is the sum of its
/// transfers, and no user account is negative (read from the database directly).
/// </summary>
public static class LedgerAudit
{
    public static async Task<List<FuzzFailure>> CheckAsync(TallyApp app, CancellationToken ct)
    {
        var problems = new List<string>();
        using (var response = await app.Admin().GetAsync("/api/admin/ledger/totals", ct))
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                problems.Add($"GET /api/admin/ledger/totals answered {(int)response.StatusCode}: {FuzzCorpus.Show(text, 300)}");
            }
            else
            {
                foreach (var total in System.Text.Json.JsonDocument.Parse(text).RootElement.EnumerateArray())
                {
                    if (total.GetProperty("total").GetDecimal() != 0)
                    {
                        problems.Add(string.Create(CultureInfo.InvariantCulture, $"ledger total in {total.GetProperty("currency").GetString()} is {total.GetProperty("total").GetDecimal()}, not 0"));
                    }
                }
            }
        }

        await using var db = app.Db();
        var accounts = await db.LedgerAccounts.AsNoTracking().ToListAsync(ct);
        var transfers = await db.LedgerTransfers.AsNoTracking().ToListAsync(ct);
        var credits = transfers.GroupBy(t => t.CreditAccountId).ToDictionary(g => g.Key, g => g.Sum(t => t.AmountMinor));
        var debits = transfers.GroupBy(t => t.DebitAccountId).ToDictionary(g => g.Key, g => g.Sum(t => t.AmountMinor));
        foreach (var account in accounts)
        {
            var expected = credits.GetValueOrDefault(account.Id) - debits.GetValueOrDefault(account.Id);
            if (account.BalanceMinor != expected)
            {
                problems.Add($"account {account.Id} ({account.Kind} {account.Currency}) holds {account.BalanceMinor} minor units, its transfers say {expected}");
            }
            if (account.Kind == AccountKinds.User && account.BalanceMinor < 0)
            {
                problems.Add($"user account {account.Id} is negative: {account.BalanceMinor} minor units");
            }
        }
        foreach (var currency in accounts.GroupBy(a => a.Currency).Where(g => g.Sum(a => a.BalanceMinor) != 0))
        {
            problems.Add($"balances in {currency.Key} sum to {currency.Sum(a => a.BalanceMinor)} minor units in the database, not 0");
        }
        return [.. problems.Select(p => new FuzzFailure("ledger invariant", null, null, "", p))];
    }
}
