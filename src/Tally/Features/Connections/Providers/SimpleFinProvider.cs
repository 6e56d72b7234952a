using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Tally.Features.Connections.Providers;

/// <summary>
/// SimpleFIN (protocol 1.0 and its errlist successor): claims a setup token into an access URL and
/// reads <c>{access}/accounts?balances-only=1</c>. The access URL's credentials go in an
/// Authorization header, never in a request URI, so no HTTP log or exception can carry them; the
/// HTTP client's own request logging is off for the same reason (a claim URL holds its token).
/// Only destinations <see cref="SimpleFinEgress"/> allows are ever called: checked here on the URL as
/// written, and again by the HTTP handler on the address it connects to.
/// </summary>
public sealed partial class SimpleFinProvider(
    IHttpClientFactory http, IOptions<SimpleFinOptions> options, SimpleFinEgress egress, ILogger<SimpleFinProvider> logger) : IAccountProvider
{
    public const string ProviderSlug = "simplefin";
    public const string HttpClientName = "simplefin";
    private const long MaxAnswerBytes = 64L * 1024 * 1024;

    public string Slug => ProviderSlug;

    public async Task<ConnectResult> ConnectAsync(ConnectInput input, CancellationToken ct)
    {
        var token = input.SetupToken ?? ReadSetupToken(input.Credentials);
        if (string.IsNullOrWhiteSpace(token))
        {
            return new ConnectResult.Rejected("setupToken", "is required: the SimpleFIN setup token (base64 of a claim URL)");
        }
        if (SimpleFinProtocol.DecodeSetupToken(token) is not { } claimUrl)
        {
            return new ConnectResult.Rejected("setupToken", "is not a SimpleFIN setup token (base64 of a claim URL)");
        }
        if (!egress.Allows(claimUrl.OriginalString))
        {
            return Untrusted();
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, claimUrl) { Content = new ByteArrayContent([]) };
        var sent = await SendAsync(request, ct);
        if (sent.Refused)
        {
            return Untrusted();
        }
        if (sent.Failure is { } failure)
        {
            return new ConnectResult.Failed(failure);
        }
        using var response = sent.Response!;
        if (response.StatusCode == HttpStatusCode.Forbidden)
        {
            LogClaimRefused(logger, claimUrl.Host);
            return new ConnectResult.Rejected("setupToken",
                "was refused: it does not exist or was already claimed. If you did not claim it yourself, it may be compromised: disable it at SimpleFIN.");
        }
        if (!response.IsSuccessStatusCode)
        {
            return new ConnectResult.Failed(FromStatus(response));
        }
        var body = (await ReadLimitedAsync(response, 8_192, ct))?.Trim();
        var access = SimpleFinProtocol.ParseAccessUrl(body);
        if (access is null || !egress.Allows(body))
        {
            return new ConnectResult.Failed(ProviderFailure.ContractMismatch("SimpleFIN's claim answer is not an access URL Tally can use."));
        }
        return new ConnectResult.Connected(new ProviderSecret(JsonSerializer.Serialize(new StoredSecret(body!))), null);
    }

    private static ConnectResult.Rejected Untrusted() =>
        new("setupToken", "points to a server Tally is not configured to trust for SimpleFIN");

    public async Task<FetchResult> FetchAccountsAsync(ProviderSecret secret, CancellationToken ct)
    {
        var accessUrl = ReadAccessUrl(secret);
        var access = SimpleFinProtocol.ParseAccessUrl(accessUrl);
        if (access is null || !egress.Allows(accessUrl))
        {
            return Unusable();
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, access.Accounts);
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", access.BasicAuth);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var sent = await SendAsync(request, ct);
        if (sent.Refused)
        {
            return Unusable();
        }
        if (sent.Failure is { } failure)
        {
            return new FetchResult.Failed(failure);
        }
        using var response = sent.Response!;
        LogAnswered(logger, access.Root.Host, (int)response.StatusCode);
        if (!response.IsSuccessStatusCode)
        {
            return new FetchResult.Failed(FromStatus(response));
        }

        string Redact(string text)
        {
            foreach (var part in (string[])[access.Password, access.Username])
            {
                text = part.Length == 0 ? text : text.Replace(part, "***", StringComparison.Ordinal);
            }
            return text;
        }
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            using var document = await JsonDocument.ParseAsync(new LimitedStream(stream, MaxAnswerBytes), default, ct);
            return SimpleFinProtocol.ReadAccountSet(document.RootElement, Redact);
        }
        catch (JsonException)
        {
            return new FetchResult.Failed(ProviderFailure.ContractMismatch("SimpleFIN answered something that is not JSON."));
        }
        catch (IOException)
        {
            return new FetchResult.Failed(ProviderFailure.Unavailable("SimpleFIN's answer was cut off or too large."));
        }
    }

    private static FetchResult.Failed Unusable() =>
        new(ProviderFailure.AuthRequired("The stored SimpleFIN access URL cannot be used; reconnect with a new setup token.", credentialsRejected: true));

    /// <summary>What Tally keeps for a SimpleFIN connection (encrypted): the access URL.</summary>
    private sealed record StoredSecret(string AccessUrl);

    private static string? ReadSetupToken(JsonElement? credentials) =>
        credentials is { ValueKind: JsonValueKind.Object } c && c.TryGetProperty("setupToken", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()
            : null;

    private static string? ReadAccessUrl(ProviderSecret secret)
    {
        try
        {
            return JsonSerializer.Deserialize<StoredSecret>(secret.Reveal())?.AccessUrl;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>An answer, a failure, or <see cref="Refused"/>: the destination resolved to an address <see cref="SimpleFinEgress"/> does not allow.</summary>
    private sealed record Sent(HttpResponseMessage? Response, ProviderFailure? Failure, bool Refused = false);

    private async Task<Sent> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.Value.Timeout);
        try
        {
            var response = await http.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            return new(response, null);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return new(null, ProviderFailure.Unavailable("SimpleFIN did not answer in time."));
        }
        catch (HttpRequestException e) when (SimpleFinEgress.IsRefusal(e))
        {
            LogRefused(logger, request.RequestUri?.Host ?? "?");
            return new(null, null, Refused: true);
        }
        catch (HttpRequestException e)
        {
            // The message names the host at most: the URI carries no credentials.
            LogUnreachable(logger, request.RequestUri?.Host ?? "?", e.HttpRequestError.ToString());
            return new(null, ProviderFailure.Unavailable("SimpleFIN could not be reached."));
        }
    }

    private static ProviderFailure FromStatus(HttpResponseMessage response) => (int)response.StatusCode switch
    {
        401 or 403 => ProviderFailure.AuthRequired("SimpleFIN refused the access (revoked or wrong credentials); reconnect with a new setup token.", credentialsRejected: true),
        402 => ProviderFailure.PaymentRequired("SimpleFIN requires payment for this account before it serves data."),
        429 => ProviderFailure.RateLimited("SimpleFIN asked Tally to slow down.", RetryAfter(response) ?? TimeSpan.FromHours(1)),
        408 or >= 500 => ProviderFailure.Unavailable($"SimpleFIN answered {(int)response.StatusCode}."),
        _ => ProviderFailure.ContractMismatch($"SimpleFIN answered {(int)response.StatusCode}, which the protocol does not describe here."),
    };

    private static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        var header = response.Headers.RetryAfter;
        if (header?.Delta is { } delta)
        {
            return delta;
        }
        return header?.Date is { } date ? date - DateTimeOffset.UtcNow : null;
    }

    private static async Task<string?> ReadLimitedAsync(HttpResponseMessage response, int maxBytes, CancellationToken ct)
    {
        await using var stream = await response.Content.ReadAsStreamAsync(ct);
        var buffer = new byte[maxBytes + 1];
        var read = 0;
        int n;
        while (read < buffer.Length && (n = await stream.ReadAsync(buffer.AsMemory(read), ct)) > 0)
        {
            read += n;
        }
        return read > maxBytes ? null : System.Text.Encoding.UTF8.GetString(buffer, 0, read);
    }

    /// <summary>Stops reading an answer past a size: a hostile or broken server cannot exhaust memory.</summary>
    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await inner.ReadAsync(buffer, cancellationToken));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        private int Count(int n)
        {
            _read += n;
            return _read > limit ? throw new IOException("answer too large") : n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "SimpleFIN at {Host} refused a setup token claim")]
    private static partial void LogClaimRefused(ILogger logger, string host);

    [LoggerMessage(Level = LogLevel.Debug, Message = "SimpleFIN at {Host} answered {Status}")]
    private static partial void LogAnswered(ILogger logger, string host, int status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SimpleFIN at {Host} was not called: it resolves to an address Tally may not reach")]
    private static partial void LogRefused(ILogger logger, string host);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SimpleFIN at {Host} could not be reached: {Error}")]
    private static partial void LogUnreachable(ILogger logger, string host, string error);
}
