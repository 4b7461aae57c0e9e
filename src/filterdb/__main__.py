from filterdb.cli import main

main()
