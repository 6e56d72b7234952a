using System.ComponentModel.DataAnnotations;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.Users.User> Users => Set<Features.Users.User>();
        public DbSet<Features.Users.GuardianJunior> GuardianJuniors => Set<Features.Users.GuardianJunior>();
    }
}

namespace Tally.Features.Users
{
    public static class UserContexts
    {
        public const string MobileBanking = "MOBILE_BANKING";
        public const string Wallet = "WALLET";
    }

    public sealed class User
    {
        public Guid Id { get; set; }
        public required string Username { get; set; }
        public required string Context { get; set; }
        public string? CustomerNumber { get; set; }
        public bool IsActive { get; set; }
        public DateTime CreatedAt { get; set; }
    }

    public sealed class GuardianJunior
    {
        public Guid GuardianId { get; set; }
        public Guid JuniorId { get; set; }
        public DateTime LinkedAt { get; set; }
    }

    internal sealed class UserMap : IEntityTypeConfiguration<User>
    {
        public void Configure(EntityTypeBuilder<User> e) => e.ToTable("users");
    }

    internal sealed class GuardianJuniorMap : IEntityTypeConfiguration<GuardianJunior>
    {
        public void Configure(EntityTypeBuilder<GuardianJunior> e)
        {
            e.ToTable("guardian_juniors");
            e.HasKey(x => new { x.GuardianId, x.JuniorId });
            e.HasOne<User>().WithMany().HasForeignKey(x => x.GuardianId);
            e.HasOne<User>().WithMany().HasForeignKey(x => x.JuniorId);
        }
    }

    public sealed record CreateUser(Guid? Id, string? Username, [property: AllowedValues(UserContexts.MobileBanking, UserContexts.Wallet)] string? Context, string? CustomerNumber, bool? IsActive);

    public sealed record UserView(Guid Id, string Username, string Context, string? CustomerNumber, bool IsActive)
    {
        public static UserView Of(User u) => new(u.Id, u.Username, u.Context, u.CustomerNumber, u.IsActive);
    }

    public static class UserQueries
    {
        /// <summary>The users an operator's search term names: by id when it reads as one, and by username (a username may look like an id).</summary>
        public static IQueryable<User> Named(this IQueryable<User> users, string idOrUsername)
        {
            var byId = Guid.TryParse(idOrUsername, out var id) ? id : (Guid?)null;
            return users.Where(u => u.Username == idOrUsername || u.Id == byId);
        }

        public static IQueryable<GuardianJunior> LinkedTo(this IQueryable<GuardianJunior> links, Guid guardianId, Guid juniorId) =>
            links.Where(l => l.GuardianId == guardianId && l.JuniorId == juniorId);
    }

    /// <summary>Users and guardian-junior links, loaded by the host platform through the admin API.</summary>
    public static class UsersEndpoints
    {
        public const int MaxUsernameLength = 200;
        public const int MaxCustomerNumberLength = 64;

        public static WebApplication MapUsers(this WebApplication app)
        {
            var admin = app.MapAdmin("/api/admin", "Admin: users");
            admin.MapPost("/users", CreateUserAsync).ForAdmins()
                .WithSummary("Create a user (a MOBILE_BANKING customer, a guardian or a WALLET junior); repeatable with the same values")
                .Refuses(409, "USER.ALREADY_EXISTS", "a user with this id or username exists with other values");
            admin.MapGet("/users/{id:guid}", GetUserAsync).WithSummary("Read a user").Refuses(404, "USER.NOT_FOUND", "no user has this id");
            admin.MapPut("/guardians/{guardianId:guid}/juniors/{juniorId:guid}", LinkJuniorAsync).ForAdmins()
                .WithSummary("Link a junior to a guardian, who may then give the junior an allowance")
                .Refuses(400, "USER.SELF_LINK", "a guardian cannot be their own junior")
                .Refuses(404, "USER.NOT_FOUND", "the guardian or the junior does not exist");
            return app;
        }

        internal static async Task<Results<Created<UserView>, Ok<UserView>, ValidationProblem, ProblemHttpResult>> CreateUserAsync(
            CreateUser body, TallyDb db, TimeProvider clock, CancellationToken ct)
        {
            var context = body.Context ?? UserContexts.MobileBanking;
            var errors = new FieldErrors()
                .CheckText(body.Username, "username", MaxUsernameLength)
                .Check(context is UserContexts.MobileBanking or UserContexts.Wallet, "context", "must be MOBILE_BANKING or WALLET")
                .CheckText(body.CustomerNumber, "customerNumber", MaxCustomerNumberLength, required: false)
                .Check(body.Id != Guid.Empty, "id", "must not be the empty uuid");
            if (errors.Any)
            {
                return Problems.Invalid(errors.ToDictionary());
            }

            var id = body.Id ?? Guid.CreateVersion7();
            // A repeated import of the same user is answered, not refused.
            var imported = await Imports.CreateOrMatchAsync(db,
                clashes: u => u.Id == id || u.Username == body.Username,
                same: u => u.Id == id && u.Username == body.Username,
                create: () => new User
                {
                    Id = id,
                    Username = body.Username!,
                    Context = context,
                    CustomerNumber = body.CustomerNumber,
                    IsActive = body.IsActive ?? true,
                    CreatedAt = clock.GetUtcNow().UtcDateTime,
                },
                ct);
            return imported switch
            {
                Imported<User>.Created(var user) => TypedResults.Created($"/api/admin/users/{id}", UserView.Of(user)),
                Imported<User>.Matched(var user) => TypedResults.Ok(UserView.Of(user)),
                _ => Problems.Conflict("USER.ALREADY_EXISTS", "A user with this id or username already exists."),
            };
        }

        internal static async Task<Results<Ok<UserView>, ProblemHttpResult>> GetUserAsync(Guid id, TallyDb db, CancellationToken ct)
        {
            var user = await db.Users.AsNoTracking().FirstOrDefaultAsync(u => u.Id == id, ct);
            return user is null ? Problems.NotFound("USER.NOT_FOUND", "No such user.") : TypedResults.Ok(UserView.Of(user));
        }

        internal static async Task<Results<NoContent, ProblemHttpResult>> LinkJuniorAsync(
            Guid guardianId, Guid juniorId, TallyDb db, TimeProvider clock, CancellationToken ct)
        {
            if (guardianId == juniorId)
            {
                return Problems.BadRequest("USER.SELF_LINK", "A guardian cannot be their own junior.");
            }
            var found = await db.Users.CountAsync(u => u.Id == guardianId || u.Id == juniorId, ct);
            if (found != 2)
            {
                return Problems.NotFound("USER.NOT_FOUND", "The guardian or the junior does not exist.");
            }
            if (await db.GuardianJuniors.LinkedTo(guardianId, juniorId).AnyAsync(ct))
            {
                return TypedResults.NoContent();
            }
            db.GuardianJuniors.Add(new GuardianJunior { GuardianId = guardianId, JuniorId = juniorId, LinkedAt = clock.GetUtcNow().UtcDateTime });
            try
            {
                await db.SaveChangesAsync(ct);
            }
            catch (DbUpdateException e) when (DbErrors.IsUniqueViolation(e))
            {
                // Linked concurrently by another request: the link exists, which is what was asked.
            }
            return TypedResults.NoContent();
        }
    }
}
