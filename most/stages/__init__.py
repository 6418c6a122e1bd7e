"""One module per make target: parse the typed recipe, call the library, write RUN/<stage>."""
