# Host tools: importers, quantizers, signing, benchmarks.
