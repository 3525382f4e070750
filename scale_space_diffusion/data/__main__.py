from .datamodule import main

main()
