using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Features.Users;
using Tally.Hosting;

namespace Tally.Features.Allowances;

public sealed record ScheduleView(
    Guid Id, Guid GuardianId, Guid JuniorId, decimal Amount, string Currency, string Frequency, int Interval,
    string[]? ByDay, int? ByMonthDay, string TimeZone, DateTime StartAt, string Status,
    DateTime? NextRunAt, DateTime? LastRunAt, DateTime CreatedAt, DateTime UpdatedAt)
{
    public static ScheduleView Of(AllowanceSchedule s) => new(
        s.Id, s.GuardianId, s.JuniorId, Currencies.FromMinor(s.AmountMinor, s.Currency), s.Currency, s.Frequency.Code(), s.Interval,
        s.ByDay is null ? null : Weekdays.ToCodes(Weekdays.Parse(s.ByDay)), s.ByMonthDay, s.TimeZone, s.StartAt, s.Status,
        s.Status == ScheduleStatus.On ? s.NextRunAt : null, s.LastRunAt, s.CreatedAt, s.UpdatedAt);
}

public sealed record CreditView(Guid Id, DateTime RunAt, decimal Amount, string Currency, string Outcome, Guid? TransactionId, string? Reason, DateTime CreditedAt)
{
    public static CreditView Of(AllowanceCredit c) =>
        new(c.Id, c.RunAt, Currencies.FromMinor(c.AmountMinor, c.Currency), c.Currency, c.Outcome, c.TransactionId, c.Reason, c.CreditedAt);
}

public sealed record UpcomingView(DateTime RunAt, DateTimeOffset LocalTime);

/// <summary>A guardian's allowance schedules: <c>/api/guardians/me/allowances</c> (and the operators' view of them, <see cref="AllowanceAdminEndpoints"/>).</summary>
public static class AllowanceEndpoints
{
    private const string NotLinked = "ALLOWANCE.JUNIOR_NOT_FOUND";
    private const string NoSchedule = "ALLOWANCE.NOT_FOUND";

    public static WebApplication MapAllowances(this WebApplication app)
    {
        var me = app.MapGroup("/api/guardians/me/allowances").WithTags("Guardian: allowances").RequireAuthorization(Roles.Guardian);
        me.MapPost("/{juniorId:guid}", CreateAsync)
            .WithSummary("Create the allowance schedule for one of the guardian's juniors")
            .Refuses(404, NotLinked, "no junior with this id is linked to the guardian")
            .Refuses(409, "ALLOWANCE.ALREADY_EXISTS", "this junior already has a schedule (one per guardian and junior)")
            .Refuses(409, "ALLOWANCE.SCHEDULE_LIMIT", "the guardian has as many schedules as one guardian may have");
        me.MapGet("/", ListAsync).WithSummary("The guardian's schedules");
        me.MapGet("/{juniorId:guid}", ReadAsync).WithSummary("The guardian's schedule for one junior").Refuses(404, NoSchedule, "no schedule for this junior");
        me.MapPatch("/{juniorId:guid}", ChangeAsync)
            .WithSummary("Change a schedule (amount, rule, zone, status); a change never pays an occurrence twice nor one from before it")
            .Refuses(404, NoSchedule, "no schedule for this junior");
        me.MapDelete("/{juniorId:guid}", DeleteAsync).WithSummary("Delete a schedule: nothing more is paid, its credits stay").Refuses(404, NoSchedule, "no schedule for this junior");
        me.MapGet("/{juniorId:guid}/credits", CreditsAsync)
            .WithSummary("Every occurrence of a schedule that came due: paid, failed or skipped, with the reason")
            .Refuses(404, NoSchedule, "no schedule for this junior");
        me.MapGet("/{juniorId:guid}/upcoming", UpcomingAsync)
            .WithSummary("The next occurrences of a schedule, in UTC and in its zone")
            .Refuses(404, NoSchedule, "no schedule for this junior");
        return app.MapAllowanceAdmin();
    }

    internal static async Task<Results<Created<ScheduleView>, ValidationProblem, ProblemHttpResult>> CreateAsync(
        Guid juniorId, AllowanceRequest body, HttpContext http, TallyDb db, IOptions<TallyOptions> tally, IOptions<AllowanceOptions> options,
        TimeProvider clock, CancellationToken ct)
    {
        var guardianId = http.User.UserId();
        var now = clock.GetUtcNow().UtcDateTime;
        // Same answer whether the junior does not exist or belongs to someone else.
        if (!await db.GuardianJuniors.LinkedTo(guardianId, juniorId).AnyAsync(ct))
        {
            return Problems.NotFound(NotLinked, "No junior with this id is linked to you.");
        }
        var (terms, errors) = AllowanceTerms.ForCreate(body, tally.Value.DefaultCurrency, now);
        if (terms is null)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        // The count and the insert in one transaction, with the guardian's creates queued one behind
        // the other, so concurrent requests cannot pass the limit together.
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.Database.ExecuteSqlRawAsync(AllowanceSql.For(db.Database).LockGuardian, [guardianId], ct);
        if (await db.AllowanceSchedules.OfGuardian(guardianId).AnyAsync(s => s.JuniorId == juniorId, ct))
        {
            return AlreadyExists();
        }
        var limit = options.Value.MaxSchedulesPerGuardian;
        if (await db.AllowanceSchedules.OfGuardian(guardianId).CountAsync(ct) >= limit)
        {
            return Problems.Conflict("ALLOWANCE.SCHEDULE_LIMIT", $"You have {limit} allowance schedules, the most one guardian may have; delete one to create another.");
        }
        var schedule = new AllowanceSchedule
        {
            Id = Guid.CreateVersion7(),
            GuardianId = guardianId,
            JuniorId = juniorId,
            Currency = terms.Currency,
            Frequency = terms.Frequency,
            Status = terms.Status,
            TimeZone = terms.TimeZone,
            ActiveFrom = terms.StartAtUtc,
            CreatedAt = now,
        };
        Apply(schedule, terms, now);
        // Missed occurrences since a start in the past are due at once: that is the catch-up.
        schedule.NextRunAt = schedule.FirstPayableOnOrAfter(schedule.StartAt);
        db.AllowanceSchedules.Add(schedule);
        try
        {
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        catch (DbUpdateException e) when (DbErrors.IsUniqueViolation(e))
        {
            return AlreadyExists();
        }
        return TypedResults.Created($"/api/guardians/me/allowances/{juniorId}", ScheduleView.Of(schedule));
    }

    internal static async Task<Ok<List<ScheduleView>>> ListAsync(HttpContext http, TallyDb db, CancellationToken ct)
    {
        var schedules = await db.AllowanceSchedules.AsNoTracking().OfGuardian(http.User.UserId()).OrderBy(s => s.CreatedAt).ToListAsync(ct);
        return TypedResults.Ok(schedules.Select(ScheduleView.Of).ToList());
    }

    internal static async Task<Results<Ok<ScheduleView>, ProblemHttpResult>> ReadAsync(Guid juniorId, HttpContext http, TallyDb db, CancellationToken ct) =>
        await FindAsync(db, http, juniorId, ct) is { } s ? TypedResults.Ok(ScheduleView.Of(s)) : Missing();

    internal static async Task<Results<Ok<ScheduleView>, ValidationProblem, ProblemHttpResult>> ChangeAsync(
        Guid juniorId, AllowanceRequest body, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var schedule = await FindAsync(db, http, juniorId, ct, tracked: true);
        if (schedule is null)
        {
            return Missing();
        }
        if (Change(schedule, body, clock.GetUtcNow().UtcDateTime) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(ScheduleView.Of(schedule));
    }

    /// <summary>
    /// A change of a schedule's terms, its status included: the one way a schedule changes, whether
    /// its guardian asks or an operator turns it on or off. Nothing is saved here; the field errors
    /// when the change is refused (the schedule is then untouched).
    /// </summary>
    internal static FieldErrors Change(AllowanceSchedule schedule, AllowanceRequest body, DateTime now)
    {
        var (terms, errors) = AllowanceTerms.ForChange(schedule, body, now);
        if (terms is null)
        {
            return errors;
        }
        var ruleChanged = terms.Frequency != schedule.Frequency || terms.Interval != schedule.Interval || terms.ByDay != schedule.ByDay
            || terms.ByMonthDay != schedule.ByMonthDay || terms.TimeZone != schedule.TimeZone || terms.StartAtUtc != schedule.StartAt
            || terms.Currency != schedule.Currency;
        var turnedOn = terms.Status == ScheduleStatus.On && schedule.Status == ScheduleStatus.Off;
        Apply(schedule, terms, now);
        if (ruleChanged || turnedOn)
        {
            // Nothing before now is paid under new terms, nor for the time a schedule was OFF.
            schedule.ActiveFrom = now;
            schedule.NextRunAt = schedule.FirstPayableOnOrAfter(now);
            schedule.EnqueuedThrough = null;
            schedule.EnqueuedAt = null;
        }
        return errors;
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(Guid juniorId, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var schedule = await FindAsync(db, http, juniorId, ct, tracked: true);
        if (schedule is null)
        {
            return Missing();
        }
        // Kept, not erased: its credits are the payment history.
        schedule.DeletedAt = clock.GetUtcNow().UtcDateTime;
        schedule.Status = ScheduleStatus.Off;
        await db.SaveChangesAsync(ct);
        return TypedResults.NoContent();
    }

    internal static async Task<Results<Ok<List<CreditView>>, ValidationProblem, ProblemHttpResult>> CreditsAsync(
        Guid juniorId, HttpContext http, TallyDb db, CancellationToken ct, int? limit = null)
    {
        if (new FieldErrors().CheckLimit(limit, 100, 1000, out var take) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var schedule = await FindAsync(db, http, juniorId, ct);
        if (schedule is null)
        {
            return Missing();
        }
        var credits = await db.AllowanceCredits.AsNoTracking().Where(c => c.ScheduleId == schedule.Id)
            .OrderByDescending(c => c.RunAt).Take(take).ToListAsync(ct);
        return TypedResults.Ok(credits.Select(CreditView.Of).ToList());
    }

    internal static async Task<Results<Ok<List<UpcomingView>>, ValidationProblem, ProblemHttpResult>> UpcomingAsync(
        Guid juniorId, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct, int? count = null)
    {
        var take = count ?? 5;
        if (take is < 1 or > 100)
        {
            return Problems.Invalid("count", "must be between 1 and 100");
        }
        var schedule = await FindAsync(db, http, juniorId, ct);
        if (schedule is null)
        {
            return Missing();
        }
        return TypedResults.Ok(Upcoming(schedule, clock.GetUtcNow().UtcDateTime, take));
    }

    /// <summary>The schedule's next occurrences: from the one due next when ON, else from now (what turning it on would start from).</summary>
    internal static List<UpcomingView> Upcoming(AllowanceSchedule schedule, DateTime now, int take)
    {
        var rule = schedule.Rule();
        var from = schedule.Status == ScheduleStatus.On && schedule.NextRunAt is { } next ? next : now;
        return Recurrence.Occurrences(rule, from).Take(take)
            .Select(t => new UpcomingView(t, new DateTimeOffset(t).ToOffset(rule.Zone.GetUtcOffset(t)))).ToList();
    }

    private static void Apply(AllowanceSchedule schedule, AllowanceTerms terms, DateTime now)
    {
        schedule.AmountMinor = terms.AmountMinor;
        schedule.Currency = terms.Currency;
        schedule.Frequency = terms.Frequency;
        schedule.Interval = terms.Interval;
        schedule.ByDay = terms.ByDay;
        schedule.ByMonthDay = terms.ByMonthDay;
        schedule.TimeZone = terms.TimeZone;
        schedule.StartAt = terms.StartAtUtc;
        schedule.Status = terms.Status;
        schedule.UpdatedAt = now;
    }

    private static async Task<AllowanceSchedule?> FindAsync(TallyDb db, HttpContext http, Guid juniorId, CancellationToken ct, bool tracked = false)
    {
        var query = db.AllowanceSchedules.OfGuardian(http.User.UserId()).Where(s => s.JuniorId == juniorId);
        return await (tracked ? query : query.AsNoTracking()).FirstOrDefaultAsync(ct);
    }

    private static ProblemHttpResult Missing() => Problems.NotFound(NoSchedule, "You have no allowance schedule for this junior.");

    private static ProblemHttpResult AlreadyExists() =>
        Problems.Conflict("ALLOWANCE.ALREADY_EXISTS", "An allowance schedule for this junior already exists.");
}
