using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Features.BalanceSync;

/// <summary>A balance as the core reported it: T24's working balance and its available balance (working less locked amounts).</summary>
public sealed record T24Balance(decimal Working, decimal Available, string Currency, DateTime? AsOf);

/// <summary>
/// Why a call to the core failed. Transient failures are retried with backoff; the others wait for
/// the next period (or an operator). <see cref="Describe"/> is what <c>last_error</c> and the logs
/// say: a reason, never a payload or a credential.
/// </summary>
public abstract record T24Failure(string Code, bool IsTransient)
{
    public abstract string Describe();

    public sealed record Timeout(TimeSpan After) : T24Failure("TIMEOUT", true)
    {
        public override string Describe() => $"TIMEOUT: no answer within {After.TotalMilliseconds:0} ms";
    }

    public sealed record Unreachable(string Detail) : T24Failure("UNREACHABLE", true)
    {
        public override string Describe() => $"UNREACHABLE: {Detail}";
    }

    public sealed record RateLimited(TimeSpan RetryAfter) : T24Failure("RATE_LIMITED", true)
    {
        public override string Describe() => $"RATE_LIMITED: retry after {RetryAfter.TotalSeconds:0.###} s";
    }

    public sealed record ServerError(int Status) : T24Failure("SERVER_ERROR", true)
    {
        public override string Describe() => $"SERVER_ERROR: HTTP {Status}";
    }

    public sealed record Unauthorized(int Status) : T24Failure("UNAUTHORIZED", false)
    {
        public override string Describe() => $"UNAUTHORIZED: HTTP {Status}; check T24:ApiKey";
    }

    public sealed record NotFound : T24Failure
    {
        public NotFound()
            : base("NOT_FOUND", false)
        {
        }

        public override string Describe() => "NOT_FOUND: the core does not know this account";
    }

    public sealed record ContractMismatch(string Detail) : T24Failure("CONTRACT_MISMATCH", false)
    {
        public override string Describe() => $"CONTRACT_MISMATCH: {Detail}";
    }

    /// <summary>An error block in the answer (even with HTTP 200). TECHNICAL errors are worth retrying; BUSINESS ones are not.</summary>
    public sealed record UpstreamErrorBlock(string ErrorType, string ErrorCode, string Message)
        : T24Failure("UPSTREAM_ERROR", string.Equals(ErrorType, "TECHNICAL", StringComparison.OrdinalIgnoreCase))
    {
        public override string Describe() => $"UPSTREAM_ERROR {ErrorType} {ErrorCode}: {Message}";
    }

    public sealed record NotConfigured : T24Failure
    {
        public NotConfigured()
            : base("NOT_CONFIGURED", false)
        {
        }

        public override string Describe() => "NOT_CONFIGURED: T24:BaseUrl is not set and the sandbox is off";
    }
}

/// <summary>One answer of the core: a balance or a failure.</summary>
public sealed record T24Result(T24Balance? Balance, T24Failure? Failure)
{
    public static T24Result Of(T24Balance balance) => new(balance, null);

    public static T24Result Of(T24Failure failure) => new(null, failure);
}

/// <summary>
/// Reads Temenos Transact's answer to <c>GET /holdings/accounts/{accountId}/balances</c>: the envelope
/// <c>{header: {status, audit, ...}, body: [{accountId, workingBalance, availableBalance,
/// onlineActualBalance, lockedAmount, currencyId, processingDate, ...}]}</c>, or an error block
/// <c>{header: {status: "failed"}, error: {type, errorDetails: [{code, message}]}}</c>, which T24 may send
/// with HTTP 200. Amounts arrive as numbers or strings; dates as <c>yyyyMMdd</c> (T24) or ISO 8601
/// (Transact). A pure function, so every shape is tested without a server.
/// </summary>
public static class T24Contract
{
    public const int MaxScale = 4;
    private const int MaxMessageLength = 200;
    private static readonly decimal MaxAmount = 1_000_000_000_000_000m;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>The answer for <paramref name="accountNumber"/> given the HTTP status, body and Retry-After.</summary>
    public static T24Result Read(int status, string? body, string accountNumber, TimeSpan? retryAfter) => status switch
    {
        429 => T24Result.Of(new T24Failure.RateLimited(retryAfter ?? TimeSpan.FromSeconds(1))),
        401 or 403 => T24Result.Of(new T24Failure.Unauthorized(status)),
        404 => T24Result.Of(new T24Failure.NotFound()),
        408 or >= 500 => T24Result.Of(new T24Failure.ServerError(status)),
        >= 200 and < 300 => ReadBody(body, accountNumber),
        _ => T24Result.Of(new T24Failure.ContractMismatch($"unexpected HTTP {status}")),
    };

    private static T24Result ReadBody(string? body, string accountNumber)
    {
        Envelope? envelope;
        try
        {
            envelope = string.IsNullOrWhiteSpace(body) ? null : JsonSerializer.Deserialize<Envelope>(body, Json);
        }
        catch (JsonException)
        {
            return Mismatch("the answer is not the Transact envelope");
        }
        if (envelope is null)
        {
            return Mismatch("empty answer");
        }
        if (ErrorBlock(envelope) is { } error)
        {
            return T24Result.Of(error);
        }
        if (envelope.Body is not { Count: > 0 } items)
        {
            return Mismatch("the answer has no balance in its body");
        }
        var item = items.Find(i => string.Equals(i?.AccountId, accountNumber, StringComparison.Ordinal))
            ?? (items.Count == 1 || items.TrueForAll(i => i?.AccountId is null) ? items[0] : null);
        if (item is null)
        {
            return Mismatch("no balance in the body is for the account asked about");
        }
        if ((item.WorkingBalance ?? item.OnlineActualBalance) is not { } balance)
        {
            return Mismatch("workingBalance is missing");
        }
        var available = item.AvailableBalance ?? balance;
        if (!Fits(balance) || !Fits(available))
        {
            return Mismatch($"an amount has more than {MaxScale} decimals or is out of range");
        }
        if (item.CurrencyId is not { Length: 3 } currency || !currency.All(char.IsAsciiLetterUpper))
        {
            return Mismatch("currencyId is not an ISO 4217 code");
        }
        DateTime? asOf = null;
        foreach (var text in new[] { item.ProcessingTime, item.ProcessingDate, item.ValueDate, item.BookingDate })
        {
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }
            if (ParseDate(text) is not { } date)
            {
                return Mismatch("a date is neither yyyyMMdd nor ISO 8601");
            }
            asOf = date;
            break;
        }
        return T24Result.Of(new T24Balance(balance, available, currency, asOf));
    }

    /// <summary>T24's <c>yyyyMMdd</c>, or ISO 8601 (a date, or a date and time with or without an offset; UTC when none).</summary>
    public static DateTime? ParseDate(string text)
    {
        text = text.Trim();
        if (text.Length == 8 && DateTime.TryParseExact(text, "yyyyMMdd", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var t24))
        {
            return t24;
        }
        if (text.Length == 10 && DateTime.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var isoDate))
        {
            return isoDate;
        }
        return text.Length > 10 && text[10] == 'T'
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var isoTime)
            ? isoTime.UtcDateTime
            : null;
    }

    private static T24Failure? ErrorBlock(Envelope envelope)
    {
        var failedStatus = envelope.Header is { ValueKind: JsonValueKind.Object } header
            && header.TryGetProperty("status", out var status) && status.ValueKind == JsonValueKind.String
            && status.GetString() is "failed" or "FAILED" or "error" or "ERROR";
        if (envelope.Error is not { ValueKind: JsonValueKind.Object } error)
        {
            return failedStatus ? new T24Failure.UpstreamErrorBlock("UNKNOWN", "", "header status failed without an error block") : null;
        }
        var type = Text(error, "type") ?? "UNKNOWN";
        string? code = Text(error, "code");
        string? message = Text(error, "message");
        if (error.TryGetProperty("errorDetails", out var details) && details.ValueKind == JsonValueKind.Array && details.GetArrayLength() > 0
            && details[0].ValueKind == JsonValueKind.Object)
        {
            code ??= Text(details[0], "code");
            message ??= Text(details[0], "message");
        }
        message ??= "";
        return new T24Failure.UpstreamErrorBlock(type, code ?? "", message.Length > MaxMessageLength ? message[..MaxMessageLength] : message);
    }

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static bool Fits(decimal amount) => amount.Scale <= MaxScale && Math.Abs(amount) < MaxAmount;

    private static T24Result Mismatch(string detail) => T24Result.Of(new T24Failure.ContractMismatch(detail));

    private sealed record Envelope(JsonElement? Header, List<BalanceItem?>? Body, JsonElement? Error);

    private sealed record BalanceItem(
        string? AccountId,
        decimal? WorkingBalance,
        decimal? AvailableBalance,
        decimal? OnlineActualBalance,
        string? CurrencyId,
        string? ProcessingTime,
        string? ProcessingDate,
        string? ValueDate,
        string? BookingDate);
}

/// <summary>
/// Where the core is: <c>T24:BaseUrl</c>, else the fake core this process serves itself, read as a plain
/// base address (<see cref="LocalUpstreams"/>): the client reaches either one by URL over HTTP.
/// </summary>
public sealed class T24Endpoint(IOptions<T24Options> options, LocalUpstreams local)
{
    public (Uri BaseUrl, string ApiKey)? Resolve()
    {
        var configured = options.Value;
        if (!string.IsNullOrWhiteSpace(configured.BaseUrl))
        {
            return (new Uri(configured.BaseUrl.TrimEnd('/') + "/"), configured.ApiKey ?? "");
        }
        return local.AddressOf(BalanceSyncOptions.Upstream) is { } served ? (served.BaseUrl, served.ApiKey) : null;
    }
}

/// <summary>
/// The core's balance call: a typed <see cref="HttpClient"/> with a bearer key and a per-call timeout.
/// Every outcome is a value (<see cref="T24Result"/>); only a bug throws. The HttpClient's own
/// request logging is off, because its URLs carry account numbers.
/// </summary>
public sealed class T24Client(HttpClient http, T24Endpoint endpoint, IOptions<T24Options> options)
{
    public async Task<T24Result> GetBalanceAsync(string accountNumber, CancellationToken ct)
    {
        if (endpoint.Resolve() is not { } target)
        {
            return T24Result.Of(new T24Failure.NotConfigured());
        }
        var timeout = options.Value.Timeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(target.BaseUrl, $"holdings/accounts/{Uri.EscapeDataString(accountNumber)}/balances"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", target.ApiKey);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token);
            var body = await response.Content.ReadAsStringAsync(deadline.Token);
            return T24Contract.Read((int)response.StatusCode, body, accountNumber, RetryAfterOf(response.Headers.RetryAfter));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return T24Result.Of(new T24Failure.Timeout(timeout));
        }
        catch (HttpRequestException e)
        {
            return T24Result.Of(new T24Failure.Unreachable(e.HttpRequestError.ToString()));
        }
    }

    /// <summary>Retry-After as seconds or a date; at most ten minutes, so a confused core cannot park us for a day.</summary>
    public static TimeSpan? RetryAfterOf(RetryConditionHeaderValue? header)
    {
        var wait = header?.Delta ?? (header?.Date is { } date ? date - DateTimeOffset.UtcNow : null);
        return wait is null ? null : TimeSpan.FromTicks(Math.Clamp(wait.Value.Ticks, 0, TimeSpan.FromMinutes(10).Ticks));
    }
}
