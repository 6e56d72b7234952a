using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Tally.Tests.Harness;

/// <summary>A plain RabbitMQ.Client connection to the test server, for arranging and inspecting the broker from outside the app.</summary>
public sealed class TestBroker : IAsyncDisposable
{
    private readonly IConnection _connection;

    private TestBroker(IConnection connection) => _connection = connection;

    public static async Task<TestBroker> ConnectAsync()
    {
        var factory = new ConnectionFactory { Uri = new Uri(Servers.RequireRabbitMq()) };
        return new TestBroker(await factory.CreateConnectionAsync(TestContext.Current.CancellationToken));
    }

    /// <summary>A channel the caller keeps (an exclusive queue lives as long as its connection).</summary>
    public Task<IChannel> OpenChannelAsync() => _connection.CreateChannelAsync(cancellationToken: TestContext.Current.CancellationToken);

    /// <summary>Runs <paramref name="work"/> on a fresh channel (a failed declare closes its channel).</summary>
    public async Task<T> OnChannelAsync<T>(Func<IChannel, Task<T>> work)
    {
        await using var channel = await _connection.CreateChannelAsync(cancellationToken: TestContext.Current.CancellationToken);
        return await work(channel);
    }

    public Task OnChannelAsync(Func<IChannel, Task> work) => OnChannelAsync(async c =>
    {
        await work(c);
        return true;
    });

    /// <summary>Messages ready in <paramref name="queue"/> (passive declare: fails when the queue does not exist).</summary>
    public Task<uint> CountAsync(string queue) =>
        OnChannelAsync(async c => (await c.QueueDeclarePassiveAsync(queue, TestContext.Current.CancellationToken)).MessageCount);

    /// <summary>The AMQP reply code the broker closed the channel with while running <paramref name="operation"/>, or null if it succeeded.</summary>
    public Task<int?> ReplyCodeOfAsync(Func<IChannel, Task> operation) => OnChannelAsync<int?>(async c =>
    {
        try
        {
            await operation(c);
            return null;
        }
        catch (OperationInterruptedException e)
        {
            return e.ShutdownReason?.ReplyCode;
        }
    });

    /// <summary>
    /// Has the broker close every connection whose client-provided name contains <paramref name="clientName"/>
    /// (rabbitmqctl close_connection), as a network drop or an operator would. Returns how many it closed.
    /// </summary>
    public static async Task<int> CloseConnectionsAsync(string clientName)
    {
        var env = Environment.GetEnvironmentVariable("TALLY_TEST_RABBITMQ_ENV");
        if (string.IsNullOrEmpty(env))
        {
            Assert.Skip("TALLY_TEST_RABBITMQ_ENV unset: rabbitmqctl of the test node unknown (run scripts/test.sh).");
        }
        const string script = """
            source "$TALLY_TEST_RABBITMQ_ENV"
            closed=0
            for pid in $(rabbitmqctl list_connections pid client_properties --no-table-headers --silent | grep -F -- "$CLIENT_NAME" | cut -f1); do
              rabbitmqctl close_connection "$pid" "test: connection dropped" >/dev/null && closed=$((closed + 1))
            done
            echo "$closed"
            """;
        var start = new System.Diagnostics.ProcessStartInfo("bash", ["-c", script])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["CLIENT_NAME"] = clientName;
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stdout = await process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        await process.WaitForExitAsync(TestContext.Current.CancellationToken);
        Assert.True(process.ExitCode == 0, $"rabbitmqctl failed: {await stderr}");
        return int.Parse(stdout.Trim().Split('\n')[^1], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Removes a test queue's topology (Q, Q.retry, Q.dlq and both exchanges) so test runs leave the broker tidy.</summary>
    public async Task DeleteTopologyAsync(string queue)
    {
        foreach (var q in new[] { queue, $"{queue}.retry", $"{queue}.dlq" })
        {
            await OnChannelAsync(c => c.QueueDeleteAsync(q, ifUnused: false, ifEmpty: false, cancellationToken: CancellationToken.None));
        }
        foreach (var x in new[] { $"{queue}.retry.exchange", $"{queue}.dlq.exchange" })
        {
            await OnChannelAsync(c => c.ExchangeDeleteAsync(x, ifUnused: false, cancellationToken: CancellationToken.None));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _connection.CloseAsync();
        await _connection.DisposeAsync();
    }
}
