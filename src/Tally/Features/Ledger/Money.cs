using System.Collections.Frozen;

namespace Tally.Features.Ledger;

/// <summary>
/// ISO 4217 currencies Tally accepts, with their minor-unit exponent. Amounts are stored as
/// whole minor units, so an amount with more decimals than its currency allows is refused, never rounded.
/// </summary>
public static class Currencies
{
    private static readonly FrozenDictionary<string, int> Exponents = new Dictionary<string, int>
    {
        ["USD"] = 2,
        ["EUR"] = 2,
        ["GBP"] = 2,
        ["CHF"] = 2,
        ["CAD"] = 2,
        ["AUD"] = 2,
        ["NZD"] = 2,
        ["SEK"] = 2,
        ["NOK"] = 2,
        ["DKK"] = 2,
        ["PLN"] = 2,
        ["CZK"] = 2,
        ["HUF"] = 2,
        ["RON"] = 2,
        ["SAR"] = 2,
        ["AED"] = 2,
        ["QAR"] = 2,
        ["EGP"] = 2,
        ["MAD"] = 2,
        ["NGN"] = 2,
        ["KES"] = 2,
        ["GHS"] = 2,
        ["ZAR"] = 2,
        ["INR"] = 2,
        ["PKR"] = 2,
        ["CNY"] = 2,
        ["HKD"] = 2,
        ["SGD"] = 2,
        ["MXN"] = 2,
        ["BRL"] = 2,
        ["TRY"] = 2,
        ["ILS"] = 2,
        ["THB"] = 2,
        ["MYR"] = 2,
        ["PHP"] = 2,
        ["JPY"] = 0,
        ["KRW"] = 0,
        ["VND"] = 0,
        ["CLP"] = 0,
        ["ISK"] = 0,
        ["UGX"] = 0,
        ["XAF"] = 0,
        ["XOF"] = 0,
        ["KWD"] = 3,
        ["BHD"] = 3,
        ["OMR"] = 3,
        ["JOD"] = 3,
        ["TND"] = 3,
        ["LYD"] = 3,
        ["IQD"] = 3,
    }.ToFrozenDictionary(StringComparer.Ordinal);

    public static bool IsKnown(string? code) => code is not null && Exponents.ContainsKey(code);

    public static int Exponent(string code) =>
        Exponents.TryGetValue(code, out var e) ? e : throw new ArgumentException($"Unknown currency {code}.", nameof(code));

    /// <summary>
    /// The most one account may hold, and the largest single amount, in minor units of any currency:
    /// 10^15 (10 trillion USD, 1 quadrillion JPY, 1 trillion KWD). The schema refuses more too.
    /// </summary>
    public const long MaxMinor = 1_000_000_000_000_000;

    /// <summary>
    /// The most a currency's funding account may have issued (its balance never goes below minus
    /// this): 10^18 minor units, so the sum of every balance of a currency always fits a 64-bit integer.
    /// </summary>
    public const long MaxIssuedMinor = 1_000_000_000_000_000_000;

    /// <summary>The largest amount of a currency, in its major units (<see cref="MaxMinor"/> scaled).</summary>
    public static decimal MaxAmount(string currency) => FromMinor(MaxMinor, currency);

    /// <summary>Minor units for an amount, or null when the amount has more decimals than the currency allows or exceeds <see cref="MaxMinor"/>.</summary>
    public static long? ToMinor(decimal amount, string currency) => CheckAmount(amount, currency) is { Minor: { } minor } ? minor : null;

    /// <summary>
    /// An amount as minor units, or why it cannot be one: more decimals than the currency allows, or
    /// beyond <see cref="MaxMinor"/> either way. Never rounds, never overflows.
    /// </summary>
    public static AmountCheck CheckAmount(decimal amount, string currency)
    {
        var exponent = Exponent(currency);
        if (Math.Abs(amount) > MaxAmount(currency))
        {
            return new AmountCheck(null, $"must be at most {MaxAmount(currency).ToString(System.Globalization.CultureInfo.InvariantCulture)} {currency}");
        }
        var scaled = amount * Pow10(exponent);
        return decimal.Truncate(scaled) == scaled
            ? new AmountCheck((long)scaled, null)
            : new AmountCheck(null, $"has more decimals than {currency} allows ({exponent})");
    }

    public static decimal FromMinor(long minor, string currency) => minor / Pow10(Exponent(currency));

    private static decimal Pow10(int exponent) => exponent switch { 0 => 1m, 1 => 10m, 2 => 100m, 3 => 1000m, _ => 10000m };
}

/// <summary>An amount as minor units, or the reason it is refused (a message for the field).</summary>
public readonly record struct AmountCheck(long? Minor, string? Error);

/// <summary>An amount with its currency. Never a double.</summary>
public readonly record struct Money(decimal Amount, string Currency)
{
    public static Money FromMinor(long minor, string currency) => new(Currencies.FromMinor(minor, currency), currency);

    public override string ToString() => $"{Amount} {Currency}";
}
