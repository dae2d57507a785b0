"""What tests share and never test themselves: the fake OpenAI-compatible server, input documents,
warehouse comparisons, the small warehouse builder. Test modules import from here, never from each other."""
