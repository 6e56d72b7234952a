using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Features.Allowances;

/// <summary>
/// A schedule as an operator sees it: its guardian and junior by id and username, its rule (also as
/// an RFC 5545 RRULE, read in <see cref="TimeZone"/> from <see cref="StartAt"/>), its status, and the
/// times that explain it (<see cref="ActiveFrom"/>: nothing before it is paid; <see cref="DeletedAt"/>).
/// </summary>
public sealed record AdminScheduleView(
    Guid Id, Guid GuardianId, string? GuardianUsername, Guid JuniorId, string? JuniorUsername, decimal Amount, string Currency,
    string Rule, string Frequency, int Interval, string[]? ByDay, int? ByMonthDay, string TimeZone, DateTime StartAt, string Status,
    DateTime? NextRunAt, DateTime? LastRunAt, DateTime ActiveFrom, DateTime CreatedAt, DateTime UpdatedAt, DateTime? DeletedAt)
{
    public static AdminScheduleView Of(AllowanceSchedule s, IReadOnlyDictionary<Guid, string> usernames) => new(
        s.Id, s.GuardianId, usernames.GetValueOrDefault(s.GuardianId), s.JuniorId, usernames.GetValueOrDefault(s.JuniorId),
        Currencies.FromMinor(s.AmountMinor, s.Currency), s.Currency, RRule(s), s.Frequency.Code(), s.Interval,
        s.ByDay is null ? null : Weekdays.ToCodes(Weekdays.Parse(s.ByDay)), s.ByMonthDay, s.TimeZone, s.StartAt, s.Status,
        s.Status == ScheduleStatus.On ? s.NextRunAt : null, s.LastRunAt, s.ActiveFrom, s.CreatedAt, s.UpdatedAt, s.DeletedAt);

    private static string RRule(AllowanceSchedule s) =>
        $"FREQ={s.Frequency.Code()};INTERVAL={s.Interval}"
        + (s.ByDay is null ? "" : $";BYDAY={s.ByDay}")
        + (s.ByMonthDay is { } day ? $";BYMONTHDAY={day}" : "");
}

/// <summary>A schedule's page: the schedule, its next occurrences (none unless it is ON), and its credits newest first, a page at a time.</summary>
public sealed record AdminScheduleDetail(AdminScheduleView Schedule, List<UpcomingView> Upcoming, Page<CreditView> Credits);

/// <summary>
/// The console's allowances: <c>/api/admin/allowances</c>. Operators find schedules by guardian or
/// junior (an id or a username), read one with every credit and its reason, and turn it on or off
/// exactly as its guardian would (<see cref="AllowanceEndpoints.Change"/>).
/// </summary>
public static class AllowanceAdminEndpoints
{
    public const int Upcoming = 5;
    private const int MaxPage = 500;

    internal static WebApplication MapAllowanceAdmin(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin/allowances", "Admin: allowances");
        admin.MapGet("/", FindAsync);
        admin.MapGet("/{scheduleId:guid}", DetailAsync).Refuses(404, "ALLOWANCE.NOT_FOUND", "no schedule has this id");
        admin.MapPost("/{scheduleId:guid}/on", (Guid scheduleId, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct) =>
            SetStatusAsync(scheduleId, ScheduleStatus.On, http, db, clock, ct)).ForOperators()
            .WithSummary("Turn a schedule on: it pays from now on, never the occurrences it missed while off")
            .Refuses(404, "ALLOWANCE.NOT_FOUND", "no schedule has this id")
            .Refuses(409, "ALLOWANCE.DELETED", "the guardian deleted this schedule");
        admin.MapPost("/{scheduleId:guid}/off", (Guid scheduleId, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct) =>
            SetStatusAsync(scheduleId, ScheduleStatus.Off, http, db, clock, ct)).ForOperators()
            .WithSummary("Turn a schedule off: nothing is paid until it is turned on again")
            .Refuses(404, "ALLOWANCE.NOT_FOUND", "no schedule has this id")
            .Refuses(409, "ALLOWANCE.DELETED", "the guardian deleted this schedule");
        return app;
    }

    /// <summary>
    /// Schedules of a guardian and/or a junior, each named by id or username, deleted ones included,
    /// oldest first (ids are time-ordered); with neither, every schedule. Paged by <paramref name="cursor"/>.
    /// </summary>
    internal static async Task<Results<Ok<Page<AdminScheduleView>>, ValidationProblem>> FindAsync(
        TallyDb db, CancellationToken ct, string? guardian = null, string? junior = null, string? cursor = null, int? limit = null)
    {
        var errors = new FieldErrors()
            .CheckText(guardian, "guardian", UsersEndpoints.MaxUsernameLength, required: false)
            .CheckText(junior, "junior", UsersEndpoints.MaxUsernameLength, required: false)
            .CheckCursor(cursor, out var after)
            .CheckLimit(limit, 50, MaxPage, out var take);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var schedules = db.AllowanceSchedules.AsNoTracking();
        if (!string.IsNullOrEmpty(guardian))
        {
            var guardians = await UserIdsAsync(db, guardian, ct);
            schedules = schedules.Where(s => guardians.Contains(s.GuardianId));
        }
        if (!string.IsNullOrEmpty(junior))
        {
            var juniors = await UserIdsAsync(db, junior, ct);
            schedules = schedules.Where(s => juniors.Contains(s.JuniorId));
        }
        if (after is { } from)
        {
            schedules = schedules.Where(s => s.Id.CompareTo(from.Id) > 0);
        }
        var rows = await schedules.OrderBy(s => s.Id).Take(take + 1).ToListAsync(ct);
        var usernames = await UsernamesAsync(db, rows, ct);
        return TypedResults.Ok(Paging.Of(rows, take, s => new Cursor(DateTime.MinValue, s.Id), s => AdminScheduleView.Of(s, usernames)));
    }

    /// <summary>One schedule: its rule and status, its next occurrences, and its credits (paid, failed or skipped, with the reason) newest first.</summary>
    internal static async Task<Results<Ok<AdminScheduleDetail>, ValidationProblem, ProblemHttpResult>> DetailAsync(
        Guid scheduleId, TallyDb db, TimeProvider clock, CancellationToken ct, string? cursor = null, int? limit = null)
    {
        var errors = new FieldErrors().CheckCursor(cursor, out var after).CheckLimit(limit, 100, MaxPage, out var take);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var schedule = await db.AllowanceSchedules.AsNoTracking().FirstOrDefaultAsync(s => s.Id == scheduleId, ct);
        if (schedule is null)
        {
            return Missing();
        }
        var credits = db.AllowanceCredits.AsNoTracking().Where(c => c.ScheduleId == scheduleId);
        if (after is { } from)
        {
            // (schedule_id, run_at) is unique: the occurrence alone is the key, walked back along that index.
            credits = credits.Where(c => c.RunAt < from.At);
        }
        var rows = await credits.OrderByDescending(c => c.RunAt).Take(take + 1).ToListAsync(ct);
        var upcoming = schedule.Status == ScheduleStatus.On && schedule.DeletedAt is null
            ? AllowanceEndpoints.Upcoming(schedule, clock.GetUtcNow().UtcDateTime, Upcoming)
            : [];
        return TypedResults.Ok(new AdminScheduleDetail(
            AdminScheduleView.Of(schedule, await UsernamesAsync(db, [schedule], ct)),
            upcoming,
            Paging.Of(rows, take, c => new Cursor(c.RunAt, c.Id), CreditView.Of)));
    }

    /// <summary>Turns a schedule on or off through the guardian's own change: turned on, it pays from now on, never the time it was off.</summary>
    internal static async Task<Results<Ok<AdminScheduleView>, ValidationProblem, ProblemHttpResult>> SetStatusAsync(
        Guid scheduleId, string status, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var schedule = await db.AllowanceSchedules.FirstOrDefaultAsync(s => s.Id == scheduleId, ct);
        if (schedule is null)
        {
            return Missing();
        }
        if (schedule.DeletedAt is not null)
        {
            return Problems.Conflict("ALLOWANCE.DELETED", "This schedule was deleted by its guardian; it can no longer be turned on or off.");
        }
        var was = schedule.Status;
        var change = new AllowanceRequest(Amount: null, Currency: null, Frequency: null, Status: status, StartAt: null, TimeZone: null, Interval: null, ByDay: null, ByMonthDay: null);
        if (AllowanceEndpoints.Change(schedule, change, clock.GetUtcNow().UtcDateTime) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        await db.SaveChangesAsync(ct);
        AuditLog.Detail(http, $"schedule {schedule.Id}: {was} -> {schedule.Status}");
        return TypedResults.Ok(AdminScheduleView.Of(schedule, await UsernamesAsync(db, [schedule], ct)));
    }

    private static Task<List<Guid>> UserIdsAsync(TallyDb db, string idOrUsername, CancellationToken ct) =>
        db.Users.AsNoTracking().Named(idOrUsername).Select(u => u.Id).ToListAsync(ct);

    private static async Task<Dictionary<Guid, string>> UsernamesAsync(TallyDb db, IEnumerable<AllowanceSchedule> schedules, CancellationToken ct)
    {
        var ids = schedules.SelectMany(s => new[] { s.GuardianId, s.JuniorId }).Distinct().ToList();
        return await db.Users.AsNoTracking().Where(u => ids.Contains(u.Id)).ToDictionaryAsync(u => u.Id, u => u.Username, ct);
    }

    private static ProblemHttpResult Missing() => Problems.NotFound("ALLOWANCE.NOT_FOUND", "No allowance schedule has this id.");
}
