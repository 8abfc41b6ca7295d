"""Built-in data sources that read published data sets from files (one module per data set).

Each module registers its source with `hwsearch.data.register` when `hwsearch.data` imports it;
`hwsearch.data.load_data` stays the one entry point.
"""
