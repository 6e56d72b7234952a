using System.Reflection;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Jobs.Instances.Instance> Instances => Set<Jobs.Instances.Instance>();
    }
}

namespace Tally.Jobs.Instances
{
    /// <summary>One Tally process as it registered itself: what it runs, and when it was last heard from.</summary>
    public sealed class Instance
    {
        public required string Id { get; set; }

        /// <summary>The roles it plays, comma-separated: <c>api,scheduler,worker</c>.</summary>
        public required string Roles { get; set; }

        public required string Version { get; set; }
        public required string Host { get; set; }
        public int HeartbeatSeconds { get; set; }
        public DateTime StartedAt { get; set; }
        public DateTime LastSeenAt { get; set; }
        public DateTime? StoppedAt { get; set; }
    }

    internal sealed class InstanceMap : IEntityTypeConfiguration<Instance>
    {
        public void Configure(EntityTypeBuilder<Instance> e) => e.ToTable("instances");
    }

    public static class InstanceStates
    {
        /// <summary>Heard from within three of its heartbeats.</summary>
        public const string Alive = "ALIVE";

        /// <summary>Stopped gracefully (it said so).</summary>
        public const string Stopped = "STOPPED";

        /// <summary>Stopped heartbeating without saying it stopped: killed, crashed, or cut off from the database.</summary>
        public const string Lost = "LOST";

        /// <summary>Heartbeats an instance may miss before it is no longer alive.</summary>
        public const int MissedHeartbeats = 3;

        public static string Of(Instance i, DateTime now) =>
            i.StoppedAt is not null ? Stopped
            : i.LastSeenAt >= now.AddSeconds(-MissedHeartbeats * (double)i.HeartbeatSeconds) ? Alive
            : Lost;
    }

    public sealed record InstanceView(
        string Id, string[] Roles, string Version, string Host, int HeartbeatSeconds, DateTime StartedAt, DateTime LastSeenAt,
        DateTime? StoppedAt, bool Alive, string State)
    {
        public static InstanceView Of(Instance i, DateTime now)
        {
            var state = InstanceStates.Of(i, now);
            return new(i.Id, i.Roles.Split(',', StringSplitOptions.RemoveEmptyEntries), i.Version, i.Host, i.HeartbeatSeconds,
                i.StartedAt, i.LastSeenAt, i.StoppedAt, state == InstanceStates.Alive, state);
        }
    }

    /// <summary>
    /// The instance registry (issue #14): every instance, whatever its roles, registers at start,
    /// heartbeats every <see cref="TallyOptions.HeartbeatSeconds"/>, and says when it stops gracefully.
    /// <c>GET /api/admin/instances</c> lists them, newest first.
    /// </summary>
    public static class InstanceRegistry
    {
        /// <summary>Rows not heard from for this long are forgotten at the next start of any instance (host-pid ids are new at every start).</summary>
        public static readonly TimeSpan Retention = TimeSpan.FromDays(7);

        private const int MaxPage = 1000;

        public static WebApplicationBuilder AddInstances(this WebApplicationBuilder builder)
        {
            builder.Services.AddHostedService<InstanceHeartbeat>();
            return builder;
        }

        public static WebApplication MapInstances(this WebApplication app)
        {
            app.MapAdmin("/api/admin", "Admin: instances").MapGet("/instances", ListAsync);
            return app;
        }

        /// <summary>The instances, newest start first, each with whether it is still alive.</summary>
        internal static async Task<Results<Ok<List<InstanceView>>, ValidationProblem>> ListAsync(TallyDb db, TimeProvider clock, CancellationToken ct, int? limit = null)
        {
            if (new FieldErrors().CheckLimit(limit, 100, MaxPage, out var take) is { Any: true } errors)
            {
                return Problems.Invalid(errors.ToDictionary());
            }
            return TypedResults.Ok(await ReadAsync(db, clock.GetUtcNow().UtcDateTime, take, ct));
        }

        /// <summary>The ids of instances not heard from for three of their heartbeats (killed, crashed or cut off): what they hold is free.</summary>
        public static async Task<List<string>> QuietAsync(TallyDb db, DateTime now, CancellationToken ct)
        {
            var rows = await db.Instances.AsNoTracking().Where(i => i.StoppedAt == null).ToListAsync(ct);
            return [.. rows.Where(i => InstanceStates.Of(i, now) == InstanceStates.Lost).Select(i => i.Id)];
        }

        public static async Task<List<InstanceView>> ReadAsync(TallyDb db, DateTime now, int take, CancellationToken ct)
        {
            var rows = await db.Instances.AsNoTracking().OrderByDescending(i => i.StartedAt).ThenBy(i => i.Id).Take(take).ToListAsync(ct);
            return rows.Select(i => InstanceView.Of(i, now)).ToList();
        }

        /// <summary>
        /// Registers (<paramref name="starting"/>: a new start time) or heartbeats an instance. One
        /// statement, an upsert on the primary key: instances starting together never collide, and a
        /// heartbeat finds its row again should it have been forgotten meanwhile.
        /// </summary>
        public static Task UpsertAsync(TallyDb db, Instance me, bool starting, CancellationToken ct) => starting
            ? db.Database.ExecuteSqlAsync($"""
                INSERT INTO instances (id, roles, version, host, heartbeat_seconds, started_at, last_seen_at, stopped_at)
                VALUES ({me.Id}, {me.Roles}, {me.Version}, {me.Host}, {me.HeartbeatSeconds}, {me.StartedAt}, {me.LastSeenAt}, {null as DateTime?})
                ON CONFLICT (id) DO UPDATE SET roles = excluded.roles, version = excluded.version, host = excluded.host,
                    heartbeat_seconds = excluded.heartbeat_seconds, started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, stopped_at = NULL
                """, ct)
            : db.Database.ExecuteSqlAsync($"""
                INSERT INTO instances (id, roles, version, host, heartbeat_seconds, started_at, last_seen_at, stopped_at)
                VALUES ({me.Id}, {me.Roles}, {me.Version}, {me.Host}, {me.HeartbeatSeconds}, {me.StartedAt}, {me.LastSeenAt}, {null as DateTime?})
                ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, stopped_at = NULL
                """, ct);

        public static string VersionOf(Assembly assembly) =>
            assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? assembly.GetName().Version?.ToString() ?? "unknown";
    }

    /// <summary>
    /// Keeps this instance's row: registered before the app serves (so the listing always has the
    /// instance answering it), stamped every heartbeat, marked stopped on a graceful stop. A failed
    /// heartbeat is logged and the next one tried: one throw never ends the loop.
    /// </summary>
    public sealed partial class InstanceHeartbeat(
        IDbContextFactory<TallyDb> dbs, IOptions<TallyOptions> options, TimeProvider clock, ILogger<InstanceHeartbeat> logger) : BackgroundService
    {
        private readonly Instance _me = new()
        {
            Id = options.Value.ResolvedInstanceId,
            Roles = string.Join(',', options.Value.EffectiveRoles),
            Version = InstanceRegistry.VersionOf(typeof(InstanceHeartbeat).Assembly),
            Host = Environment.MachineName,
            HeartbeatSeconds = options.Value.HeartbeatSeconds,
        };

        public override async Task StartAsync(CancellationToken cancellationToken)
        {
            var now = clock.GetUtcNow().UtcDateTime;
            _me.StartedAt = now;
            _me.LastSeenAt = now;
            await using (var db = await dbs.CreateDbContextAsync(cancellationToken))
            {
                await InstanceRegistry.UpsertAsync(db, _me, starting: true, cancellationToken);
                var forgotten = now - InstanceRegistry.Retention;
                await db.Instances.Where(i => i.LastSeenAt < forgotten).ExecuteDeleteAsync(cancellationToken);
            }
            LogRegistered(logger, _me.Id, _me.Roles, _me.Version);
            await base.StartAsync(cancellationToken);
        }

        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_me.HeartbeatSeconds), clock);
            try
            {
                while (await timer.WaitForNextTickAsync(stoppingToken))
                {
                    try
                    {
                        _me.LastSeenAt = clock.GetUtcNow().UtcDateTime;
                        await using var db = await dbs.CreateDbContextAsync(stoppingToken);
                        await InstanceRegistry.UpsertAsync(db, _me, starting: false, stoppingToken);
                    }
                    catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                    {
                        LogHeartbeatFailed(logger, e, _me.Id);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
        }

        public override async Task StopAsync(CancellationToken cancellationToken)
        {
            await base.StopAsync(cancellationToken);
            try
            {
                var now = clock.GetUtcNow().UtcDateTime;
                await using var db = await dbs.CreateDbContextAsync(cancellationToken);
                await db.Instances.Where(i => i.Id == _me.Id)
                    .ExecuteUpdateAsync(s => s.SetProperty(i => i.StoppedAt, now).SetProperty(i => i.LastSeenAt, now), cancellationToken);
            }
            catch (Exception e)
            {
                // Stopping anyway: the row then reads as lost after three heartbeats instead of stopped.
                LogStopFailed(logger, e, _me.Id);
            }
        }

        [LoggerMessage(Level = LogLevel.Information, Message = "Instance {Instance} registered: roles {Roles}, version {Version}")]
        private static partial void LogRegistered(ILogger logger, string instance, string roles, string version);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Heartbeat of instance {Instance} failed; trying again at the next one")]
        private static partial void LogHeartbeatFailed(ILogger logger, Exception e, string instance);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Could not mark instance {Instance} stopped")]
        private static partial void LogStopFailed(ILogger logger, Exception e, string instance);
    }
}
