using Tally.Features.Allowances;

namespace Tally.Tests.Features.Allowances;

/// <summary>The pure checks behind the allowance endpoints: zone ids, start times, terms.</summary>
public class AllowanceTermsTests
{
    private static readonly DateTime Now = new(2026, 5, 1, 12, 0, 0, DateTimeKind.Utc);

    [Theory]
    [InlineData("UTC")]
    [InlineData("Etc/UTC")]
    [InlineData("Europe/London")]
    [InlineData("America/New_York")]
    [InlineData("America/Argentina/Buenos_Aires")]
    [InlineData("America/Port-au-Prince")]
    [InlineData("US/Eastern")]
    [InlineData("Europe/Kiev")]
    [InlineData("Europe/Kyiv")]
    [InlineData("Asia/Calcutta")]
    [InlineData("Etc/GMT+5")]
    [InlineData("Etc/GMT-14")]
    [InlineData("Pacific/Kiritimati")]
    [InlineData("GMT")]
    [InlineData("EST5EDT")]
    public void Zone_RegionOrAlias_IsAccepted(string id)
    {
        Assert.True(IanaZones.IsWellFormed(id));
        Assert.Equal(id, IanaZones.Find(id)?.Id);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData(" UTC")]
    [InlineData("UTC ")]
    [InlineData("Europe/London\n")]
    [InlineData("Europe/\u0000London")]
    [InlineData("Europe/\u200BLondon")]
    [InlineData("Factory")]
    [InlineData("posixrules")]
    [InlineData("localtime")]
    [InlineData("leapseconds")]
    [InlineData("+VERSION")]
    [InlineData("right/Europe/London")]
    [InlineData("posix/Europe/London")]
    [InlineData("Posix/Europe/London")]
    [InlineData("SystemV/EST5")]
    [InlineData("zone.tab")]
    [InlineData("tzdata.zi")]
    [InlineData("../../etc/passwd")]
    [InlineData("Europe/../Europe/London")]
    [InlineData("/usr/share/zoneinfo/UTC")]
    [InlineData("/UTC")]
    [InlineData("Europe/")]
    [InlineData("Europe//London")]
    [InlineData("Europe")]
    [InlineData("europe/london")] // found only while Europe/London is cached: refused always
    [InlineData("EUROPE/LONDON")]
    [InlineData("Mars/Olympus")]
    [InlineData("Eastern Standard Time")]
    [InlineData("UTC-11")]
    [InlineData("1Europe/London")]
    public void Zone_TechnicalMalformedOrUnknown_IsRefused(string? id)
    {
        _ = IanaZones.Find("Europe/London");
        Assert.Null(IanaZones.Find(id));
    }

    [Fact]
    public void Zone_LongerThan64Characters_IsRefusedBeforeAnyLookup()
    {
        Assert.False(IanaZones.IsWellFormed("America/" + new string('A', 57)));
        Assert.Null(IanaZones.Find(new string('A', 100_000)));
    }

    public static TheoryData<string, string, DateTime?> Starts => new()
    {
        { "2030-01-07T09:00:00", "Europe/London", Utc(2030, 1, 7, 9) },
        { "2030-07-07T09:00:00", "Europe/London", Utc(2030, 7, 7, 8) },
        { "2030-07-07T09:00", "Europe/London", Utc(2030, 7, 7, 8) },
        { "2030-07-07", "Europe/London", Utc(2030, 7, 6, 23) },
        { "2030-07-07T09:00:00Z", "Europe/London", Utc(2030, 7, 7, 9) },
        { "2030-07-07T09:00:00+14:00", "UTC", Utc(2030, 7, 6, 19) },
        { "2030-07-07T09:00:00-12:00", "UTC", Utc(2030, 7, 7, 21) },
        { "2030-07-07T09:00:00.1234567Z", "UTC", Utc(2030, 7, 7, 9).AddTicks(1_234_567) },
        { "2030-07-07T09:00:00.123456789Z", "UTC", Utc(2030, 7, 7, 9).AddTicks(1_234_567) },
        { "1900-01-01T00:00:00Z", "UTC", Utc(1900, 1, 1) },
        { "2199-12-31T23:59:59Z", "UTC", Utc(2199, 12, 31, 23, 59, 59) },
        // Wall-clock times just outside the range still convert (the range is checked on the instant).
        { "1899-12-31T12:00:00", "Etc/GMT+12", Utc(1900, 1, 1) },
        // The calendar's ends, in every form: unreadable (null) or an instant far outside the range, never a throw.
        { "0001-01-01T00:00:00", "Pacific/Kiritimati", null },
        { "0001-01-01T00:00:00", "Etc/GMT+12", null },
        { "9999-12-31T23:59:59", "Pacific/Kiritimati", null },
        { "9999-12-31T23:59:59", "Etc/GMT+12", null },
        { "9999-12-31T23:59:59-12:00", "UTC", null },
        { "9999-12-31T23:59:59.9999999-12:00", "UTC", null },
        { "2030-07-07T09:00:00+15:00", "UTC", null },
        { "2030-13-01T09:00:00Z", "UTC", null },
        { "2030-02-30T09:00:00Z", "UTC", null },
        { "2030-07-07T24:00:00Z", "UTC", null },
        { "1/2/2030", "UTC", null },
        { "next tuesday", "UTC", null },
        { "", "UTC", null },
        { "2030-07-07T09:00:00Z" + new string(' ', 100), "UTC", null },
    };

    [Theory]
    [MemberData(nameof(Starts))]
    public void ParseStart_ReadsIsoInstantsAndWallClockTimes_AndNeverThrows(string text, string zone, DateTime? expected)
    {
        var parsed = AllowanceTerms.ParseStart(text, IanaZones.Find(zone)!);
        if (expected is null)
        {
            Assert.True(parsed is null || parsed < AllowanceTerms.EarliestStart || parsed >= AllowanceTerms.StartRangeEnd, $"{text} gave {parsed:O}");
        }
        else
        {
            Assert.Equal(expected, parsed);
            Assert.Equal(DateTimeKind.Utc, parsed!.Value.Kind);
        }
    }

    [Theory]
    [InlineData("1900-01-01T00:00:00Z", "UTC", true)]
    [InlineData("1899-12-31T23:59:59Z", "UTC", false)]
    [InlineData("1900-01-01T00:00:00+00:01", "UTC", false)]
    [InlineData("1900-01-01T00:00:00", "Europe/Paris", false)]
    [InlineData("1900-01-01T00:00:00", "America/New_York", true)]
    [InlineData("2199-12-31T23:59:59.9999999Z", "UTC", true)]
    [InlineData("2200-01-01T00:00:00Z", "UTC", false)]
    [InlineData("2199-12-31T23:00:00", "Pacific/Kiritimati", true)]
    [InlineData("2199-12-31T23:00:00", "Etc/GMT+12", false)]
    [InlineData("0001-01-01T00:00:00+14:00", "UTC", false)]
    [InlineData("0001-01-01T00:00:00Z", "UTC", false)]
    [InlineData("9999-12-31T23:59:59Z", "UTC", false)]
    [InlineData("9999-12-31T23:59:59+14:00", "UTC", false)]
    public void ForCreate_StartOutsideTheRange_IsRefusedNamingStartAt(string startAt, string zone, bool accepted)
    {
        var (terms, errors) = AllowanceTerms.ForCreate(new AllowanceRequest(1m, null, "DAILY", "ON", startAt, zone, null, null, null), "USD", Now);
        Assert.Equal(accepted, terms is not null);
        if (!accepted)
        {
            var message = Assert.Single(errors.ToDictionary()["startAt"]);
            Assert.Contains("1900-01-01T00:00:00Z", message);
            Assert.Contains("2200-01-01T00:00:00Z", message);
        }
    }

    [Theory]
    [InlineData("79228162514264337593543950335", "USD")]
    [InlineData("10000000000000.01", "USD")]
    [InlineData("1000000000000001", "JPY")]
    [InlineData("1.001", "USD")]
    [InlineData("1.5", "JPY")]
    [InlineData("0", "USD")]
    [InlineData("-79228162514264337593543950335", "USD")]
    public void ForCreate_AmountBeyondTheCurrency_IsRefusedNamingAmount(string amount, string currency)
    {
        var body = new AllowanceRequest(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture), currency, "DAILY", "ON", null, null, null, null, null);
        var (terms, errors) = AllowanceTerms.ForCreate(body, "USD", Now);
        Assert.Null(terms);
        Assert.Equal(["amount"], errors.ToDictionary().Keys);
    }

    [Fact]
    public void ForCreate_LargestAmount_IsAccepted()
    {
        var (terms, _) = AllowanceTerms.ForCreate(new AllowanceRequest(10_000_000_000_000m, null, "DAILY", "ON", null, null, null, null, null), "USD", Now);
        Assert.Equal(1_000_000_000_000_000, terms?.AmountMinor);
    }

    [Fact]
    public void ForChange_StoredStartOutsideTheRange_AsksForANewStart()
    {
        // A schedule stored before the range was enforced.
        var legacy = new AllowanceSchedule
        {
            Currency = "USD",
            Frequency = Frequency.Daily,
            Status = "ON",
            TimeZone = "UTC",
            AmountMinor = 100,
            StartAt = DateTime.SpecifyKind(DateTime.MinValue, DateTimeKind.Utc),
        };
        var (terms, errors) = AllowanceTerms.ForChange(legacy, new AllowanceRequest(2m, null, null, null, null, "Pacific/Kiritimati", null, null, null), Now);
        Assert.Null(terms);
        Assert.Equal(["startAt"], errors.ToDictionary().Keys);

        var (fixedTerms, _) = AllowanceTerms.ForChange(legacy, new AllowanceRequest(2m, null, null, null, "2026-01-01T00:00:00Z", null, null, null, null), Now);
        Assert.Equal(Utc(2026, 1, 1), fixedTerms?.StartAtUtc);
    }

    private static DateTime Utc(int y, int m, int d, int h = 0, int min = 0, int s = 0) => new(y, m, d, h, min, s, DateTimeKind.Utc);
}
