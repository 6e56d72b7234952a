using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using Tally.Features.Allowances;
using Tally.Features.StoreIntegrity;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// One trace from the request that enqueues work, through the queue, to the worker and its database;
/// problems and log lines that name what they belong to. Spans are read from an in-memory exporter
/// added beside the OTLP one, which points at a port nobody listens on.
/// </summary>
public class TracingTests
{
    [Theory]
    [InlineData("inprocess")]
    [InlineData("rabbitmq")]
    public async Task RunNow_EnqueuesAllowance_WorkersSpanAndItsStatementsShareTheRequestsTrace(string transport)
    {
        var spans = new ConcurrentQueue<Activity>();
        var queue = $"test.{Guid.NewGuid():N}.allowances";
        var app = await StartTracedAppAsync(transport, spans, queue);
        try
        {
            await RunNowAndAssertOneTraceAsync(app, transport, spans, queue);
        }
        finally
        {
            await app.DisposeAsync();
            if (transport == "rabbitmq")
            {
                await using var broker = await TestBroker.ConnectAsync();
                await broker.DeleteTopologyAsync(queue);
            }
        }
    }

    private static async Task RunNowAndAssertOneTraceAsync(TallyApp app, string transport, ConcurrentQueue<Activity> spans, string queue)
    {
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var guardianAccount = await admin.CreateAccountAsync(guardian);
        var juniorAccount = await admin.CreateAccountAsync(junior);
        await admin.DepositAsync(guardianAccount, 10m);
        var start = DateTime.UtcNow.AddMinutes(-5);
        await app.AsGuardian(guardian).PostJsonAsync($"/api/guardians/me/allowances/{junior}",
            new { amount = 4m, frequency = "DAILY", status = "ON", startAt = start.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture) })
            .ExpectAsync(HttpStatusCode.Created);

        // The caller's trace: the run, its publish and the worker's delivery all join it.
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/admin/jobs/{EnqueueDueAllowances.Name}/run");
        request.Headers.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        (await admin.SendAsync(request, TestContext.Current.CancellationToken)).EnsureSuccessStatusCode();
        await Eventually.TrueAsync(async () => await admin.BalanceAsync(juniorAccount) == 4m, "the occurrence paid");

        Activity? process = null;
        await Eventually.TrueAsync(
            () => Task.FromResult((process = spans.FirstOrDefault(s => s.DisplayName == $"{queue} process" && s.TraceId == traceId)) is not null),
            "the worker's process span in the request's trace");
        var inTrace = spans.Where(s => s.TraceId == traceId).ToList();
        var job = Assert.Single(inTrace, s => s.DisplayName == $"job {EnqueueDueAllowances.Name}");
        var publish = Assert.Single(inTrace, s => s.DisplayName == $"{queue} publish");
        Assert.Equal(ActivityKind.Producer, publish.Kind);
        Assert.Equal(job.SpanId, publish.ParentSpanId);
        Assert.Equal(ActivityKind.Consumer, process!.Kind);
        Assert.Equal(publish.SpanId, process.ParentSpanId);
        Assert.Equal(transport == "rabbitmq" ? "rabbitmq" : "in-process", process.GetTagItem("messaging.system"));
        Assert.Equal("ack", process.GetTagItem("tally.queue.action"));
        // No body in any attribute: only ids and names.
        Assert.DoesNotContain(inTrace.SelectMany(s => s.TagObjects), t => t.Value is string v && v.Contains(junior.ToString(), StringComparison.Ordinal) && t.Key.StartsWith("messaging", StringComparison.Ordinal));
        if (transport == "rabbitmq")
        {
            // The worker's PostgreSQL statements (without batching: in the delivery's own span).
            Assert.Contains(inTrace, s => s.Source.Name == "Npgsql" && s.ParentSpanId == process.SpanId);
        }
    }

    [Fact]
    public async Task Problem_CarriesTheRequestsW3CTraceId()
    {
        var spans = new ConcurrentQueue<Activity>();
        await using var app = await StartTracedAppAsync("inprocess", spans, "allowance.schedule");
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/admin/dead-letters/{Guid.NewGuid()}");
        request.Headers.Add("traceparent", $"00-{traceId.ToHexString()}-{ActivitySpanId.CreateRandom().ToHexString()}-01");
        var body = await app.Admin().SendAsync(request, TestContext.Current.CancellationToken).ExpectAsync(HttpStatusCode.NotFound);
        Assert.Equal(traceId.ToHexString(), body.GetProperty("traceId").GetString());
    }

    [Fact]
    public async Task NoExporterConfigured_NoTracerProvider()
    {
        await using var app = TallyApp.Sqlite();
        Assert.Null(app.Services.GetService<TracerProvider>());
    }

    [Fact]
    public async Task JobRun_LogLinesCarryTheRunIdInScope()
    {
        var logs = new CapturedLogs();
        await using var app = TallyApp.Sqlite(services: logs.Register);
        var run = await app.Admin().PostAsync($"/api/admin/jobs/{RepairHasOrders.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        var runId = run.GetProperty("run").GetProperty("id").GetInt64();

        var line = Assert.Single(logs.Entries, e => e.Message == "No accounts out of sync");
        Assert.Equal(runId, line.Scopes["RunId"]);
        Assert.Equal(RepairHasOrders.Name, line.Scopes["Job"]);
    }

    private static async Task<TallyApp> StartTracedAppAsync(string transport, ConcurrentQueue<Activity> spans, string queue)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Otel:Endpoint"] = "http://127.0.0.1:9",
            ["Allowances:QueueName"] = queue,
            ["Allowances:BatchCommits"] = "false",
        };
        void Services(IServiceCollection services) =>
            services.ConfigureOpenTelemetryTracerProvider(t => t.AddProcessor(new OpenTelemetry.SimpleActivityExportProcessor(new Collecting(spans))));
        if (transport == "rabbitmq")
        {
            settings["RabbitMq:Url"] = Servers.RequireRabbitMq();
            return TallyApp.Postgres(await Servers.NewPostgresDatabaseAsync(), settings, Services);
        }
        return TallyApp.Sqlite(settings, Services);
    }

    /// <summary>Keeps every exported span, as the in-memory exporter does, in a queue safe to read while the app writes.</summary>
    private sealed class Collecting(ConcurrentQueue<Activity> spans) : OpenTelemetry.BaseExporter<Activity>
    {
        public override OpenTelemetry.ExportResult Export(in OpenTelemetry.Batch<Activity> batch)
        {
            foreach (var span in batch)
            {
                spans.Enqueue(span);
            }
            return OpenTelemetry.ExportResult.Success;
        }
    }
}
