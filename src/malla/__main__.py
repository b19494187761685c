from malla.cli.main import main

main()
