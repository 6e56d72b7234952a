using System.Globalization;
using System.Text.Json;
using Tally.Hosting;

namespace Tally.Tests.Hosting;

/// <summary>The HTTP API's decimal: read only when exact, written exactly as System.Text.Json always has.</summary>
public class ExactDecimalTests
{
    private static readonly JsonSerializerOptions BuiltIn = new(JsonSerializerDefaults.Web);
    private static readonly JsonSerializerOptions Exact = new(JsonSerializerDefaults.Web) { Converters = { new ExactDecimalConverter() } };

    private sealed record Amount(decimal Value, decimal? Maybe);

    [Theory]
    [InlineData("0", "0")]
    [InlineData("-0", "0")]
    [InlineData("0.000", "0.000")]
    [InlineData("12.50", "12.50")]
    [InlineData("1e2", "100")]
    [InlineData("15E-1", "1.5")]
    [InlineData("-0.0000000000000000000000000001", "-0.0000000000000000000000000001")]
    [InlineData("79228162514264337593543950335", "79228162514264337593543950335")]
    [InlineData("-79228162514264337593543950335", "-79228162514264337593543950335")]
    [InlineData("7.9228162514264337593543950335", "7.9228162514264337593543950335")]
    [InlineData("0.1000000000000000000000000000", "0.1000000000000000000000000000")]
    [InlineData("1.0e1", "10")]
    [InlineData("0e-99999999999999999999999", "0")]
    public void ExactNumbers_AreReadAsTheBuiltInReadsThem(string json, string expected)
    {
        var value = JsonSerializer.Deserialize<decimal>(json, Exact);
        Assert.Equal(expected, value.ToString(CultureInfo.InvariantCulture));
        Assert.Equal(JsonSerializer.Deserialize<decimal>(json, BuiltIn).ToString(CultureInfo.InvariantCulture), value.ToString(CultureInfo.InvariantCulture));
        Assert.Equal(value, JsonSerializer.Deserialize<decimal>($"\"{json}\"", Exact)); // the web defaults read numbers from strings
    }

    [Theory]
    [InlineData("0.1000000000000000000000000000001", "rounded")]
    [InlineData("0.12345678901234567890123456789", "rounded")]
    [InlineData("1e-29", "rounded")]
    [InlineData("1.00000000000000000000000000001", "rounded")]
    [InlineData("1e30", "largest amount")]
    [InlineData("79228162514264337593543950336", "largest amount")]
    [InlineData("-1e999999999999999999999", "largest amount")]
    [InlineData("\"ten\"", "must be a number")]
    [InlineData("\" 1\"", "must be a number")]
    [InlineData("\"01\"", "must be a number")]
    [InlineData("\"1.\"", "must be a number")]
    [InlineData("\"NaN\"", "must be a number")]
    [InlineData("true", "must be a number")]
    [InlineData("[1]", "must be a number")]
    public void InexactOrNotNumbers_AreRefusedNamingTheField(string json, string message)
    {
        var error = Assert.Throws<JsonFieldException>(() => JsonSerializer.Deserialize<Amount>($$"""{"value":{{json}}}""", Exact));
        Assert.Contains(message, error.Message);
        Assert.Equal("$.value", error.Path);
        var maybe = Assert.Throws<JsonFieldException>(() => JsonSerializer.Deserialize<Amount>($$"""{"value":1,"maybe":{{json}}}""", Exact));
        Assert.Equal("$.maybe", maybe.Path);
    }

    [Fact]
    public void Null_StaysNullForANullableAmount()
    {
        Assert.Null(JsonSerializer.Deserialize<Amount>("""{"value":1,"maybe":null}""", Exact)!.Maybe);
    }

    [Fact]
    public void Writing_IsTheBuiltInsByteForByte_AndReadsBackTheSameDecimal()
    {
        var random = new Random(20240611);
        var values = new List<decimal> { 0m, -0m, 0.000m, 1m, -1m, 12.50m, decimal.MaxValue, decimal.MinValue, 0.0000000000000000000000000001m, 1.0000000000000000000000000000m };
        for (var i = 0; i < 5000; i++)
        {
            values.Add(new decimal(random.Next(), random.Next(), random.Next(0, 5) == 0 ? random.Next() : 0, random.Next(2) == 0, (byte)random.Next(0, 29)));
        }
        foreach (var value in values)
        {
            var written = JsonSerializer.Serialize(new Amount(value, value), Exact);
            Assert.Equal(JsonSerializer.Serialize(new Amount(value, value), BuiltIn), written);
            var read = JsonSerializer.Deserialize<Amount>(written, Exact)!;
            Assert.Equal(value.ToString(CultureInfo.InvariantCulture), read.Value.ToString(CultureInfo.InvariantCulture));
            Assert.Equal(value.ToString(CultureInfo.InvariantCulture), read.Maybe!.Value.ToString(CultureInfo.InvariantCulture));
        }
        Assert.Equal("""{"1.50":true}""", JsonSerializer.Serialize(new Dictionary<decimal, bool> { [1.50m] = true }, Exact));
        Assert.Equal(1.50m, JsonSerializer.Deserialize<Dictionary<decimal, bool>>("""{"1.50":true}""", Exact)!.Keys.Single());
    }
}
