namespace Tally.Hosting;

/// <summary>The seed's environment variable names, honoured as aliases of Tally's settings.</summary>
public static class ConfigAliases
{
    private static readonly (string Alias, string Setting)[] Aliases =
    [
        ("RABBITMQ_URL", "RabbitMq:Url"),
        ("REDIS_URL", "Redis:Url"),
        ("ALLOWANCE_QUEUE_NAME", "Allowances:QueueName"),
        ("ALLOWANCE_MAX_RETRIES", "Allowances:MaxRetries"),
        ("ALLOWANCE_RETRY_DELAY_MS", "Allowances:RetryDelayMs"),
        ("BALANCE_SYNC_INTERVAL", "BalanceSync:IntervalMs"),
        ("AUTH_SYNC_TIMEOUT", "BalanceSync:AuthSyncTimeoutMs"),
        ("T24_API_URL", "T24:BaseUrl"),
        ("T24_API_KEY", "T24:ApiKey"),
    ];

    /// <summary>An alias fills its setting only when the setting itself is not configured.</summary>
    public static WebApplicationBuilder AddConfigAliases(this WebApplicationBuilder builder)
    {
        var values = new Dictionary<string, string?>();
        foreach (var (alias, setting) in Aliases)
        {
            var value = builder.Configuration[alias];
            if (!string.IsNullOrWhiteSpace(value) && string.IsNullOrWhiteSpace(builder.Configuration[setting]))
            {
                values[setting] = value;
            }
        }
        builder.Configuration.AddInMemoryCollection(values);
        return builder;
    }
}
