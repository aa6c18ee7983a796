from lrconsole.cli import main

raise SystemExit(main())
