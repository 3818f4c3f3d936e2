from kamalpy.cli.main import main

main()
