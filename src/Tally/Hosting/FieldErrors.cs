namespace Tally.Hosting;

/// <summary>Collects field errors for a 400 answer: <c>errors.Check(amount &gt; 0, "amount", "must be positive")</c>.</summary>
public sealed class FieldErrors
{
    private readonly Dictionary<string, List<string>> _errors = new(StringComparer.Ordinal);

    public bool Any => _errors.Count > 0;

    public FieldErrors Check(bool ok, string field, string message)
    {
        if (!ok)
        {
            Add(field, message);
        }
        return this;
    }

    /// <summary>
    /// A client's text (a name, a label): required or not, at most <paramref name="maxLength"/>
    /// characters, and free of control characters (which hide in logs, exports and terminals).
    /// </summary>
    public FieldErrors CheckText(string? value, string field, int maxLength, bool required = true)
    {
        if (value is null || value.Length == 0)
        {
            return Check(!required, field, "is required");
        }
        if (required && string.IsNullOrWhiteSpace(value))
        {
            Add(field, "must not be blank");
        }
        else if (value.Length > maxLength)
        {
            Add(field, $"must be at most {maxLength} characters");
        }
        else if (value.Any(char.IsControl))
        {
            Add(field, "must not contain control characters");
        }
        return this;
    }

    public void Add(string field, string message)
    {
        if (!_errors.TryGetValue(field, out var list))
        {
            _errors[field] = list = [];
        }
        list.Add(message);
    }

    public Dictionary<string, string[]> ToDictionary() => _errors.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray());
}
