"""What tests share and never test themselves: the fake OpenAI-compatible server, input documents,
warehouse comparisons, the small warehouse builder, local S3 and Spark Connect servers, the Databricks
CLI (built once, cached under the user cache). Test modules import from here, never from each other."""
