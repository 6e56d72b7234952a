using System.Collections.Frozen;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Sandbox;

/// <summary>
/// <c>Sandbox:T24</c>: how the fake core behaves. Latency is <see cref="LatencyMs"/> plus up to
/// <see cref="JitterMs"/>, and <see cref="SlowLatencyMs"/> for a <see cref="SlowRate"/> share of calls
/// (the long tail). <see cref="ErrorRate"/> of calls answer 503, <see cref="ThrottleRate"/> answer 429,
/// and above <see cref="RateLimitPerSecond"/> arrivals in any second every call answers 429 (0: no limit).
/// </summary>
public sealed record SandboxT24Settings
{
    public string ApiKey { get; init; } = "sandbox-t24-key";
    public int LatencyMs { get; init; } = 40;
    public int JitterMs { get; init; } = 20;
    public double SlowRate { get; init; }
    public int SlowLatencyMs { get; init; } = 3000;
    public double ErrorRate { get; init; }
    public double ThrottleRate { get; init; }
    public int RateLimitPerSecond { get; init; }
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Balances move to a new value every period.</summary>
    public int DriftPeriodMs { get; init; } = 60_000;

    /// <summary>The currency of an account whose number does not end in <c>-XXX</c> (an ISO code).</summary>
    public string Currency { get; init; } = "USD";
}

/// <summary>What the fake core has seen: every arrival counts, whatever it was answered.</summary>
public sealed record SandboxT24Stats(long Calls, int Concurrent, int MaxConcurrent, int MaxCallsInAnySecond, IReadOnlyDictionary<string, int> CallsByAccount);

/// <summary>
/// A fake Temenos Transact serving <c>GET /sandbox/t24/holdings/accounts/{accountId}/balances</c> over
/// real HTTP, for any account number, with the Transact envelope, a deterministic balance per account
/// that drifts every <see cref="SandboxT24Settings.DriftPeriodMs"/>, amounts as strings for some
/// accounts and numbers for others, and dates in both T24 formats. Account numbers with a marker
/// behave on purpose (like a payment sandbox's test cards):
/// <c>FAIL</c> always 503; <c>FLAKY</c> 503 on its first two calls; <c>THROTTLE</c> 429 on its first
/// call; <c>MISSING</c> 404; <c>ERRBLOCK</c> an error block with HTTP 200; <c>SLOW</c> always the slow
/// latency; a <c>-EUR</c> (any ISO code) suffix sets the currency.
/// It counts calls, calls in flight and the most calls in any one second, for tests and benchmarks.
/// </summary>
public sealed class SandboxT24(IOptions<SandboxOptions> options)
{
    /// <summary>The upstream's name to its clients (<see cref="LocalUpstreams"/>), and where it is served.</summary>
    public const string Upstream = "t24";

    public const string BasePath = "sandbox/t24/";

    private const int MaxArrivals = 2_000_000;

    /// <summary>
    /// The currencies the fake core knows in an account number's suffix; any other suffix is part of
    /// the number. Its own list: a fake upstream depends on no feature of Tally.
    /// </summary>
    private static readonly FrozenSet<string> Currencies = new[]
    {
        "USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "SAR", "AED",
        "QAR", "EGP", "MAD", "NGN", "KES", "GHS", "ZAR", "INR", "PKR", "CNY", "HKD", "SGD", "MXN", "BRL", "TRY", "ILS",
        "THB", "MYR", "PHP", "JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "KWD", "BHD", "OMR", "JOD", "TND",
        "LYD", "IQD",
    }.ToFrozenSet(StringComparer.Ordinal);

    private readonly object _lock = new();
    private readonly List<long> _arrivals = [];
    private readonly Dictionary<string, int> _callsByAccount = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<long>> _arrivalsByAccount = new(StringComparer.Ordinal);
    private readonly Dictionary<string, decimal> _adjustments = new(StringComparer.Ordinal);
    private long _calls;
    private int _concurrent;
    private int _maxConcurrent;
    private TaskCompletionSource? _hold;
    private SandboxT24Settings _settings = options.Value.T24;

    public SandboxT24Settings Settings
    {
        get => Volatile.Read(ref _settings);
        set => Volatile.Write(ref _settings, value);
    }

    /// <summary>Calls wait (counted, in flight) until <see cref="Release"/>.</summary>
    public void Hold()
    {
        lock (_lock)
        {
            _hold ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public void Release()
    {
        TaskCompletionSource? hold;
        lock (_lock)
        {
            hold = _hold;
            _hold = null;
        }
        hold?.TrySetResult();
    }

    /// <summary>Money moved at the core: the account's balance changes by <paramref name="delta"/> from now on.</summary>
    public void Adjust(string accountNumber, decimal delta)
    {
        lock (_lock)
        {
            _adjustments[accountNumber] = _adjustments.GetValueOrDefault(accountNumber) + delta;
        }
    }

    public void ResetStats()
    {
        lock (_lock)
        {
            _arrivals.Clear();
            _callsByAccount.Clear();
            _arrivalsByAccount.Clear();
            _calls = 0;
            _maxConcurrent = _concurrent;
        }
    }

    public int CallsTo(string accountNumber)
    {
        lock (_lock)
        {
            return _callsByAccount.GetValueOrDefault(accountNumber);
        }
    }

    public SandboxT24Stats Stats()
    {
        lock (_lock)
        {
            return new SandboxT24Stats(_calls, _concurrent, _maxConcurrent, MaxInAnyWindow(Stopwatch.Frequency), new Dictionary<string, int>(_callsByAccount));
        }
    }

    /// <summary>The arrival times (Stopwatch ticks) of every call since the last reset.</summary>
    public long[] Arrivals()
    {
        lock (_lock)
        {
            return [.. _arrivals];
        }
    }

    /// <summary>The arrival times (Stopwatch ticks) of the calls for one account.</summary>
    public long[] ArrivalsFor(string accountNumber)
    {
        lock (_lock)
        {
            return _arrivalsByAccount.TryGetValue(accountNumber, out var list) ? [.. list] : [];
        }
    }

    /// <summary>The working balance and the locked amount of an account at a time: deterministic, drifting per period.</summary>
    public (decimal Working, decimal Locked) BalanceAt(string accountNumber, DateTime utc)
    {
        var seed = Hash(accountNumber, 0);
        var step = (long)((utc - DateTime.UnixEpoch).TotalMilliseconds / Math.Max(1, Settings.DriftPeriodMs));
        var baseAmount = 1_000m + ((seed % 9_000_000UL) / 100m);
        var wobble = (Hash(accountNumber, step) % 200_000UL / 100m) - 1_000m;
        decimal adjustment;
        lock (_lock)
        {
            adjustment = _adjustments.GetValueOrDefault(accountNumber);
        }
        return (baseAmount + wobble + adjustment, (seed >> 24) % 10_000UL / 100m);
    }

    public async Task<IResult> HandleAsync(string accountId, HttpContext http, CancellationToken ct)
    {
        int callNumber;
        Task? hold;
        lock (_lock)
        {
            _calls++;
            _concurrent++;
            _maxConcurrent = Math.Max(_maxConcurrent, _concurrent);
            if (_arrivals.Count >= MaxArrivals)
            {
                _arrivals.RemoveRange(0, MaxArrivals / 2);
            }
            var arrival = Stopwatch.GetTimestamp();
            _arrivals.Add(arrival);
            if (!_arrivalsByAccount.TryGetValue(accountId, out var mine))
            {
                _arrivalsByAccount[accountId] = mine = [];
            }
            mine.Add(arrival);
            callNumber = _callsByAccount[accountId] = _callsByAccount.GetValueOrDefault(accountId) + 1;
            hold = _hold?.Task;
        }
        // Out of flight before the answer is written: the client cannot see an answer while we still count the call.
        try
        {
            return await AnswerAsync(accountId, callNumber, hold, http, ct);
        }
        finally
        {
            lock (_lock)
            {
                _concurrent--;
            }
        }
    }

    private async Task<IResult> AnswerAsync(string accountId, int callNumber, Task? hold, HttpContext http, CancellationToken ct)
    {
        var s = Settings;
        if (!string.Equals(http.Request.Headers.Authorization.ToString(), $"Bearer {s.ApiKey}", StringComparison.Ordinal))
        {
            return ErrorBlock(StatusCodes.Status401Unauthorized, "SECURITY", "SEC-401", "Invalid or missing bearer key");
        }
        if (hold is not null)
        {
            await hold.WaitAsync(ct);
        }
        var marker = accountId.ToUpperInvariant();
        var random = Random.Shared;
        if ((s.RateLimitPerSecond > 0 && CallsInLastSecond() > s.RateLimitPerSecond)
            || (marker.Contains("THROTTLE", StringComparison.Ordinal) && callNumber == 1)
            || random.NextDouble() < s.ThrottleRate)
        {
            http.Response.Headers.RetryAfter = s.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return ErrorBlock(StatusCodes.Status429TooManyRequests, "TECHNICAL", "RATE-429", "Too many requests");
        }
        var slow = marker.Contains("SLOW", StringComparison.Ordinal) || random.NextDouble() < s.SlowRate;
        var latency = slow ? s.SlowLatencyMs : s.LatencyMs + (s.JitterMs > 0 ? random.Next(s.JitterMs + 1) : 0);
        if (latency > 0)
        {
            await Task.Delay(latency, ct);
        }
        if (marker.Contains("FAIL", StringComparison.Ordinal) || (marker.Contains("FLAKY", StringComparison.Ordinal) && callNumber <= 2)
            || random.NextDouble() < s.ErrorRate)
        {
            return ErrorBlock(StatusCodes.Status503ServiceUnavailable, "TECHNICAL", "SYS-503", "Service temporarily unavailable");
        }
        if (marker.Contains("MISSING", StringComparison.Ordinal))
        {
            return ErrorBlock(StatusCodes.Status404NotFound, "BUSINESS", "E-113104", "ACCOUNT RECORD MISSING");
        }
        if (marker.Contains("ERRBLOCK", StringComparison.Ordinal))
        {
            return ErrorBlock(StatusCodes.Status200OK, "BUSINESS", "E-100212", "ACCOUNT RESTRICTED FOR ENQUIRY");
        }
        return Balance(accountId, s, latency);
    }

    private IResult Balance(string accountId, SandboxT24Settings s, int latency)
    {
        var now = DateTime.UtcNow;
        var (working, locked) = BalanceAt(accountId, now);
        var available = working - locked;
        var seed = Hash(accountId, 0);
        var currency = CurrencyOf(accountId, s.Currency);
        // Half the accounts get amounts as strings, half as numbers; dates rotate through both T24 formats.
        var asStrings = seed % 2 == 0;
        object Amount(decimal amount) => asStrings ? amount.ToString("0.00", CultureInfo.InvariantCulture) : amount;
        var item = new Dictionary<string, object?>
        {
            ["accountId"] = accountId,
            ["workingBalance"] = Amount(working),
            ["availableBalance"] = Amount(available),
            ["onlineActualBalance"] = Amount(working),
            ["onlineClearedBalance"] = Amount(available),
            ["lockedAmount"] = Amount(locked),
            ["currencyId"] = currency,
        };
        switch (seed % 3)
        {
            case 0:
                item["processingDate"] = now.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
                break;
            case 1:
                item["processingDate"] = now.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
                break;
            default:
                item["processingTime"] = now.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
                break;
        }
        return Results.Json(new
        {
            header = new
            {
                audit = new { T24_time = latency, responseParse_time = 1, requestParse_time = 1 },
                page_start = 1,
                page_token = Guid.NewGuid().ToString(),
                total_size = 1,
                page_size = 99,
                status = "success",
            },
            body = new[] { item },
        });
    }

    private static IResult ErrorBlock(int status, string type, string code, string message) => Results.Json(
        new
        {
            header = new { status = "failed", audit = new { T24_time = 1, responseParse_time = 0, requestParse_time = 0 } },
            error = new { type, errorDetails = new[] { new { code, message } } },
        },
        statusCode: status);

    private int CallsInLastSecond()
    {
        lock (_lock)
        {
            var from = Stopwatch.GetTimestamp() - Stopwatch.Frequency;
            var index = _arrivals.BinarySearch(from);
            return _arrivals.Count - (index < 0 ? ~index : index);
        }
    }

    /// <summary>The most arrivals within any window of <paramref name="window"/> ticks (two pointers over the ordered arrivals).</summary>
    private int MaxInAnyWindow(long window)
    {
        var max = 0;
        for (int start = 0, end = 0; end < _arrivals.Count; end++)
        {
            while (_arrivals[end] - _arrivals[start] >= window)
            {
                start++;
            }
            max = Math.Max(max, end - start + 1);
        }
        return max;
    }

    private static string CurrencyOf(string accountId, string fallback)
    {
        var dash = accountId.LastIndexOf('-');
        var suffix = dash >= 0 ? accountId[(dash + 1)..] : "";
        return suffix.Length == 3 && Currencies.Contains(suffix) ? suffix : fallback;
    }

    /// <summary>FNV-1a over the account number and a step: stable across processes and runs.</summary>
    private static ulong Hash(string text, long step)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes($"{text}|{step}"))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }
        return hash ^ (hash >> 29);
    }
}
